"""The task store's interface: one atomic read-modify-write, lookups, and the schema rule.

Implementations (`sqlite.py`, `postgres.py`) keep one row per task: the record as JSON plus the
columns queries need (status, deadline, owner, created_at). Every write is durable when the call
returns, so the gateway answers a sidecar only after its status change is stored. FLYs never
come here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import msgspec

from ..service import Cursor
from ..state import TaskRecord

#: The schema this code writes; `migrate` brings older stores up to it.
SCHEMA_VERSION: Final = 3  # 2: the `owner` column (who created the task); 3: `created_at`

Change = Callable[[TaskRecord], TaskRecord | None]
#: What `update` returns: (the record now, whether the change changed it).
Updated = tuple[TaskRecord | None, bool]

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(TaskRecord)


class StoreError(RuntimeError):
    """The store cannot be used; the message is one line, fit to stop the gateway with."""


class SchemaTooNew(StoreError):
    """The database was written by a newer gateway than this one."""


class TaskExists(StoreError):
    """An insert for an id that is already stored."""


class TaskStore(Protocol):
    """Where tasks live. Every method is safe to call from many tasks at once."""

    url: str

    async def open(self) -> None:
        """Connect, create or migrate the schema; raises StoreError (e.g. SchemaTooNew)."""
        ...

    async def aclose(self) -> None: ...

    async def insert(self, rec: TaskRecord) -> None:
        """Store a new task; raises TaskExists."""
        ...

    async def get(self, task_id: str) -> TaskRecord | None: ...

    async def update(self, task_id: str, change: Change) -> tuple[TaskRecord | None, bool]:
        """Apply `change` to the stored record atomically (no other update interleaves).

        Returns (the record now, whether `change` changed it); (None, False) for an unknown id.
        `change` is pure and may run more than once (never with side effects).
        """
        ...

    async def update_many(self, jobs: list[tuple[str, Change]]) -> list[Updated | BaseException]:
        """`update` for each (id, change), each atomic on its own (the embedded store commits
        them together); one outcome per job, in order, an exception as a value (a StoreError
        when the store failed)."""
        ...

    async def deadlines(self) -> list[tuple[float, str]]:
        """(deadline_at, id) of every unfinished task that has a deadline."""
        ...

    async def recent(
        self, limit: int, *, owner: str | None = None, before: Cursor | None = None
    ) -> list[TaskRecord]:
        """At most `limit` tasks, newest first by (created_at, id): every owner's (`owner`
        None) or only `owner`'s, and only those strictly after `before` in that order."""
        ...


def encode(rec: TaskRecord) -> bytes:
    return _encoder.encode(rec)


def decode(doc: bytes | str) -> TaskRecord:
    return _decoder.decode(doc)


def check_version(found: int, url: str) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"task store {redact(url)} has schema version {found}, newer than this gateway's "
            f"{SCHEMA_VERSION}: upgrade asya-gateway (or point it at another database)"
        )


def redact(url: str) -> str:
    """The URL without a password (never logged, never in an error)."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    cred, _, host = tail.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}" if ":" in cred else f"{head}{sep}{user}@{host}"


__all__ = [
    "SCHEMA_VERSION",
    "Change",
    "Cursor",
    "SchemaTooNew",
    "StoreError",
    "TaskExists",
    "TaskStore",
    "Updated",
    "check_version",
    "decode",
    "encode",
    "redact",
]
