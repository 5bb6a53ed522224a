"""The embedded task store: one SQLite file (WAL), written from the event loop when it can be.

Two connections. The loop's runs the point operations (create, get, a batch of status
updates) right on the event loop: they are tens of microseconds, and a hop to a worker thread
cost ~50 µs of CPU here, a third of a healthy gateway's CPU per task (`bench/ingest_bench.py`).
It never waits: busy timeout 0, so a file locked by another process declines at once, and
no checkpoints (they fsync). The thread's connection runs what declined (waiting for the
lock), what may be large (listings, the deadline scan, schema set-up) and every checkpoint.

Concurrent updates are group-committed (`combine.Combiner`): one transaction for all of them.
Every write commits before the call returns (`synchronous=NORMAL` in WAL mode survives the
process being killed; only an OS crash can lose the last commits). `BEGIN IMMEDIATE` makes the
read-modify-write of `update` atomic against other processes on the same file too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from ..state import TaskRecord
from .base import (
    SCHEMA_VERSION,
    Change,
    Cursor,
    StoreError,
    TaskExists,
    Updated,
    check_version,
    decode,
    encode,
)
from .combine import Combiner

_MIGRATIONS: Final = {
    1: [
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at REAL,"
        " updated_at REAL NOT NULL, doc BLOB NOT NULL)",
        "CREATE INDEX tasks_deadline ON tasks (deadline_at) WHERE deadline_at IS NOT NULL"
        " AND status NOT IN ('succeeded', 'failed', 'canceled')",
    ],
    # The owner (`key:NAME` / `jwt:SUB`) as a column too, filled from the rows' documents.
    2: [
        "ALTER TABLE tasks ADD COLUMN owner TEXT",
        "UPDATE tasks SET owner = json_extract(CAST(doc AS TEXT), '$.owner')",
        "CREATE INDEX tasks_owner ON tasks (owner) WHERE owner IS NOT NULL",
    ],
    # When the task was created, as a column too (ListTasks pages by it), filled from the rows.
    3: [
        "ALTER TABLE tasks ADD COLUMN created_at REAL",
        "UPDATE tasks SET created_at = json_extract(CAST(doc AS TEXT), '$.created_at')",
        "CREATE INDEX tasks_created ON tasks (created_at, id)",
        "CREATE INDEX tasks_owner_created ON tasks (owner, created_at, id) WHERE owner IS NOT NULL",
    ],
}

_Update = tuple[str, Change]
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
#: Loop writes between checkpoints (each copies the WAL into the database, in the thread).
_CHECKPOINT_EVERY: Final = 100
_BUSY_TIMEOUT_S: Final = 30.0


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


class SqliteStore:
    """`sqlite:///ABSOLUTE/PATH` (or `sqlite://RELATIVE/PATH`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # File-URL semantics: `sqlite:///tmp/x.db` is /tmp/x.db; `sqlite://x.db` is relative.
        self.path = url.removeprefix("sqlite://") or ":memory:"
        self._slow: sqlite3.Connection | None = None  # the thread's
        self._fast: sqlite3.Connection | None = None  # the loop's (none for :memory:)
        self._limiter = anyio.CapacityLimiter(1)  # the thread's connection: one call at a time
        self._updates: Combiner[_Update, Updated] = Combiner(self._update_batch)
        self._loop_writes = 0

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(connection, *args)` on the thread's connection."""
        db = self._connection(self._slow)
        try:
            return await anyio.to_thread.run_sync(partial(fn, db, *args), limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"task store {self.path}: {exc}") from exc

    async def _call(self, fn: Callable[..., Any], *args: Any, write: bool = False) -> Any:
        """`fn(connection, *args)` on the loop's connection, or in the thread if the file is
        locked by someone else (nothing was written: `fn` runs again there)."""
        fast = self._fast
        if fast is None:
            return await self._run(fn, *args)
        try:
            result = fn(fast, *args)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise StoreError(f"task store {self.path}: {exc}") from exc
            with anyio.CancelScope(shield=True):  # a write that starts is seen to its end
                return await self._run(fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"task store {self.path}: {exc}") from exc
        if write:
            self._loop_writes += 1
            if self._loop_writes >= _CHECKPOINT_EVERY:
                self._loop_writes = 0
                with anyio.CancelScope(shield=True):
                    await self._run(_checkpoint)
        return result

    def _connection(self, db: sqlite3.Connection | None) -> sqlite3.Connection:
        if db is None:
            raise StoreError("task store is not open")
        return db

    async def open(self) -> None:
        try:
            self._slow = await anyio.to_thread.run_sync(self._open_slow)
            if self.path != ":memory:":
                self._fast = await anyio.to_thread.run_sync(self._open_fast)
        except sqlite3.Error as exc:
            await self.aclose()
            raise StoreError(f"task store {self.path}: {exc}") from exc

    def _open_slow(self) -> sqlite3.Connection:
        if self.path and self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS asya_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM asya_schema").fetchone()
            found = row[0] if row else 0
            check_version(found, self.url)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[version]:
                    db.execute(stmt)
            if row is None:
                db.execute("INSERT INTO asya_schema VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE asya_schema SET version = ?", (max(found, SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise
        return db

    def _open_fast(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        db.execute("PRAGMA synchronous=NORMAL")  # per connection
        db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints fsync: the thread runs them
        return db

    async def aclose(self) -> None:
        fast, slow, self._fast, self._slow = self._fast, self._slow, None, None
        for db in (fast, slow):
            if db is not None:
                await anyio.to_thread.run_sync(db.close, limiter=self._limiter)

    async def insert(self, rec: TaskRecord) -> None:
        await self._call(_insert, rec, write=True)

    async def get(self, task_id: str) -> TaskRecord | None:
        row = await self._call(_get, task_id)
        return None if row is None else decode(row[0])

    async def update(self, task_id: str, change: Change) -> tuple[TaskRecord | None, bool]:
        return await self._updates.submit((task_id, change))

    async def update_many(self, jobs: list[_Update]) -> list[Updated | BaseException]:
        return await self._updates.submit_many(jobs)

    async def _update_batch(self, jobs: list[_Update]) -> list[Updated | BaseException]:
        result: list[Updated | BaseException] = await self._call(_update_many, jobs, write=True)
        return result

    async def deadlines(self) -> list[tuple[float, str]]:
        rows = await self._run(_deadlines)
        return [(float(d), str(i)) for d, i in rows]

    async def recent(
        self, limit: int, *, owner: str | None = None, before: Cursor | None = None
    ) -> list[TaskRecord]:
        rows = await self._run(_recent, limit, owner, before)
        return [decode(r[0]) for r in rows]


# -- the SQL, on whichever connection runs it -------------------------------------------------


def _checkpoint(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _insert(db: sqlite3.Connection, rec: TaskRecord) -> None:
    try:
        db.execute(
            "INSERT INTO tasks (id, status, deadline_at, updated_at, doc, owner, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                rec.id,
                rec.status,
                rec.deadline_at,
                rec.updated_at,
                encode(rec),
                rec.owner,
                rec.created_at,
            ),
        )
    except sqlite3.IntegrityError:
        raise TaskExists(f"task {rec.id!r} already exists") from None


def _get(db: sqlite3.Connection, task_id: str) -> Any:
    return db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()


def _update_many(db: sqlite3.Connection, jobs: list[_Update]) -> list[Updated | BaseException]:
    """Every queued update in one transaction (one commit); a `change` that raises fails only
    its own job (it wrote nothing)."""
    out: list[Updated | BaseException] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for task_id, change in jobs:
            row = db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                out.append((None, False))
                continue
            old = decode(row[0])
            try:
                new = change(old)
            except Exception as exc:
                out.append(exc)
                continue
            if new is None:
                out.append((old, False))
                continue
            db.execute(
                "UPDATE tasks SET status = ?, deadline_at = ?, updated_at = ?, doc = ?"
                " WHERE id = ?",
                (new.status, new.deadline_at, new.updated_at, encode(new), task_id),
            )
            out.append((new, True))
        db.execute("COMMIT")
        return out
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _deadlines(db: sqlite3.Connection) -> Any:
    return db.execute(
        "SELECT deadline_at, id FROM tasks WHERE deadline_at IS NOT NULL"
        " AND status NOT IN ('succeeded', 'failed', 'canceled')"
    ).fetchall()


def _recent(db: sqlite3.Connection, limit: int, owner: str | None, before: Cursor | None) -> Any:
    where: list[str] = []
    args: list[object] = []
    if owner is not None:
        where.append("owner = ?")
        args.append(owner)
    if before is not None:
        where.append("(created_at, id) < (?, ?)")
        args += [before[0], before[1]]
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    return db.execute(
        f"SELECT doc FROM tasks{cond} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*args, max(0, limit)),
    ).fetchall()


__all__ = ["SqliteStore"]
