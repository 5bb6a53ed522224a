"""The embedded transport: durable queues in one SQLite file (WAL), shared by processes on one host.

A message row is visible when `visible_at <= now` (wall clock, shared by all processes); leasing
sets `visible_at` to the lease expiry, so a crashed consumer's message comes back by itself.
Delays are the same column in the future. Statements run on the event loop when they cannot
block (no lock wait, small body), else in a worker thread; doorbells (`doorbell.py`) wake idle
receivers in well under a millisecond instead of polling.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel

from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport
from .doorbell import Bell, Ringer, bell_directory
from .errors import TransportError
from .sqlite_store import Leased, Store, WantThread

#: Largest body accepted (SQLite itself allows ~1 GB; bigger envelopes belong in object storage).
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: Idle receivers re-check the queue at least this often, in case a ring was lost (e.g. a
#: sender on another host sharing the file over NFS, which we do not support but tolerate).
SAFETY_POLL_SECONDS: Final = 0.25
#: The loop's connection never checkpoints; the thread's runs one when a receiver goes idle
#: after this many loop writes, or inline after the second number if nobody ever idles.
_CHECKPOINT_EVERY: Final = 200
_CHECKPOINT_AT_THE_LATEST: Final = 2000
_WRITES: Final = frozenset({"send", "send_and_ack", "ack", "requeue", "extend", "declare"})


class SqliteDelivery(Delivery):
    __slots__ = ("_queue", "_rowid", "_token", "_transport", "attempt", "body", "message_id")

    def __init__(self, transport: SqliteTransport, queue: str, leased: Leased) -> None:
        self._transport = transport
        self._queue = queue
        self._rowid, self.body, self.attempt, self._token = leased
        self.message_id = str(self._rowid)

    async def ack(self) -> None:
        await self._transport._run("ack", self._rowid, self._token)

    async def requeue(self, delay: float = 0.0) -> None:
        await self._transport._run("requeue", self._queue, self._rowid, self._token, delay)

    async def extend(self, seconds: float) -> None:
        await self._transport._run("extend", self._rowid, self._token, seconds)


class SqliteTransport(Transport):
    """Queues in one SQLite file; open with `await SqliteTransport.open(path)`."""

    max_message_bytes = MAX_MESSAGE_BYTES
    label = "SQLite"

    def __init__(
        self, fast: Store, slow: Store, ringer: Ringer, bells_dir: Path, lease_seconds: float
    ) -> None:
        self._fast = fast
        self._slow = slow
        self._ringer = ringer
        self._bells_dir = bells_dir
        self._lease_seconds = lease_seconds
        self._bells: dict[str, Bell] = {}
        # The thread side: one call at a time on its connection; SQLite serializes writers
        # anyway, and this keeps the event loop free while a call waits for another's lock.
        self._limiter = anyio.CapacityLimiter(1)
        self._loop_writes = 0
        self._closed = False

    @classmethod
    async def open(
        cls, path: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> SqliteTransport:
        directory = bell_directory(path)
        ringer = Ringer(directory)
        try:
            slow = await anyio.to_thread.run_sync(partial(Store, path, ringer, on_loop=False))
            fast = await anyio.to_thread.run_sync(partial(Store, path, ringer, on_loop=True))
        except sqlite3.Error as exc:
            ringer.close()
            raise TransportError(f"cannot open SQLite queue file {path!r}: {exc}") from exc
        return cls(fast, slow, ringer, directory, lease_seconds)

    async def _run(self, name: str, *args: Any) -> Any:
        """Run store method `name`: on the loop when that needs no waiting, else in the thread.

        A thread hop costs ~50 µs, more than most of these statements; the loop attempt never
        waits for a lock (busy timeout 0) and never checkpoints, so it stays in the tens of µs.
        """
        if self._closed:
            raise TransportError("transport is closed")
        # Yield (and take a pending cancellation) before, never after, the statement: a loop of
        # fast receives must not starve the other tasks, and a lease taken is always returned.
        await anyio.lowlevel.checkpoint()
        try:
            try:
                result = self._fast.call(name, *args)
            except WantThread:
                # Shielded: a statement that started always finishes, so a cancelled caller
                # never leaves a half-known outcome (e.g. a committed send it thinks failed).
                with anyio.CancelScope(shield=True):
                    result = await anyio.to_thread.run_sync(
                        self._slow.call, name, *args, limiter=self._limiter
                    )
            else:
                if name in _WRITES or (name == "lease" and result[0] is not None):
                    self._loop_writes += 1
                if self._loop_writes >= _CHECKPOINT_AT_THE_LATEST:
                    await self._checkpoint()  # nobody idles: pay for it here
        except sqlite3.Error as exc:
            raise TransportError(f"SQLite queue operation {name} failed: {exc}") from exc
        return result

    async def _checkpoint(self) -> None:
        """Copy the WAL back into the database (fsyncs, so in the thread), letting it restart."""
        self._loop_writes = 0
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._slow.call, "checkpoint", limiter=self._limiter)

    async def declare(self, queue: str) -> None:
        await self._run("declare", queue)

    async def exists(self, queue: str) -> bool:
        return bool(await self._run("exists", queue))

    async def send(
        self, queue: str, body: bytes, *, delay: float = 0.0, must_exist: bool = False
    ) -> None:
        self.check_size(body)
        await self._run("send", [(queue, body)], delay, must_exist)

    async def send_many(
        self,
        messages: Iterable[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        must_exist: bool = False,
    ) -> None:
        batch = list(messages)
        for _, body in batch:
            self.check_size(body)
        if batch:
            await self._run("send", batch, delay, must_exist)

    async def send_then_ack(
        self,
        messages: Iterable[tuple[str, bytes]],
        delivery: Delivery,
        *,
        must_exist: bool = False,
    ) -> None:
        """Outputs and ack in one transaction: exactly once between SQLite queues."""
        if not isinstance(delivery, SqliteDelivery) or delivery._transport is not self:
            await super().send_then_ack(messages, delivery, must_exist=must_exist)
            return
        batch = list(messages)
        for _, body in batch:
            self.check_size(body)
        await self._run("send_and_ack", batch, delivery._rowid, delivery._token, must_exist)

    def _bell(self, queue: str) -> Bell:
        bell = self._bells.get(queue)
        if bell is None:
            bell = self._bells[queue] = Bell(self._bells_dir, queue)
        return bell

    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        deadline = anyio.current_time() + max(wait, 0.0)
        first = queue not in self._bells
        bell = self._bell(queue)  # bound before the first look, so no ring is missed
        if first:
            await self._run("declare", queue)
        while True:
            leased, next_due = await self._run("lease", queue, self._lease_seconds)
            if leased is not None:
                bell.pass_on()  # there may be more: let one more idle receiver look
                return SqliteDelivery(self, queue, leased)
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return None
            if self._loop_writes >= _CHECKPOINT_EVERY:
                await self._checkpoint()  # idle anyway: keep checkpoints off the busy path
                continue
            until_due = math.inf if next_due is None else max(next_due - time.time(), 0.0)
            try:
                await bell.wait(min(remaining, SAFETY_POLL_SECONDS, until_due + 0.0005))
            except anyio.ClosedResourceError:
                raise TransportError("transport closed while receiving") from None

    async def depths(self) -> dict[str, int]:
        result: dict[str, int] = await self._run("depths")
        return result

    async def aclose(self) -> None:
        if self._closed:
            return
        for bell in self._bells.values():
            bell.close()
        self._bells.clear()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._slow.close, limiter=self._limiter)
        self._fast.close()
        self._closed = True
        self._ringer.close()


__all__ = [
    "MAX_MESSAGE_BYTES",
    "SAFETY_POLL_SECONDS",
    "SqliteDelivery",
    "SqliteTransport",
]
