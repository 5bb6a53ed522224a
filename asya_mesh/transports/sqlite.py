"""The embedded transport: durable queues in one SQLite file (WAL), shared by processes on one host.

A message row is visible when `visible_at <= now` (wall clock, shared by all processes); leasing
sets `visible_at` to the lease expiry, so a crashed consumer's message comes back by itself.
Delays are the same column in the future. Statements run on the event loop when they cannot
block (no lock wait, small body), else in a worker thread; doorbells (`doorbell.py`) wake idle
receivers in well under a millisecond instead of polling.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel

from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport
from .doorbell import Bell, Ringer, bell_directory
from .errors import LeaseLost, QueueMissing, TransportError

#: Largest body accepted (SQLite itself allows ~1 GB; bigger envelopes belong in object storage).
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: Idle receivers re-check the queue at least this often, in case a ring was lost (e.g. a
#: sender on another host sharing the file over NFS, which we do not support but tolerate).
SAFETY_POLL_SECONDS: Final = 0.25
#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at, id);
-- Every queue a consumer declared (or a plain send created): what `must_exist` checks.
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY) WITHOUT ROWID;
"""

_Leased = tuple[int, bytes, int, int]  # id, body, attempt, lease token
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
#: Bodies above this are read and written in the worker thread, not on the event loop.
_LOOP_BODY_BYTES: Final = 256 * 1024
#: The loop's connection never checkpoints; the thread's runs one when a receiver goes idle
#: after this many loop writes, or inline after the second number if nobody ever idles.
_CHECKPOINT_EVERY: Final = 200
_CHECKPOINT_AT_THE_LATEST: Final = 2000
_WRITES: Final = frozenset({"send", "send_and_ack", "ack", "requeue", "extend", "declare"})


class _WantThread(Exception):
    """The event-loop fast path declines (lock held elsewhere, large body): use the thread."""


class _Store:
    """Blocking SQL on one connection.

    Two per transport: `on_loop` runs on the event loop and never waits (busy timeout 0, no
    checkpoints, small bodies only), declining with `_WantThread`; the other runs in a worker
    thread, one call at a time, retrying lock contention with short sleeps.
    """

    def __init__(self, path: str, ringer: Ringer, *, on_loop: bool) -> None:
        self._ringer = ringer
        self._on_loop = False  # wait for locks while setting up, even the loop's connection
        self._known: set[str] = set()
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a lease never upgrades a
        # read lock to a write lock (the classic SQLITE_BUSY deadlock between processes).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self.call("_setup", on_loop)
        self._on_loop = on_loop

    def _setup(self, on_loop: bool) -> None:
        # We wait for locks ourselves (see `call`): SQLite's own busy handler sleeps 1 ms at
        # first, too long for a hop that should cost well under a millisecond.
        self._db.execute("PRAGMA busy_timeout = 0")
        # NORMAL in WAL (a per-connection setting): a commit survives a process crash; a power
        # loss may roll back the last transactions (documented in docs/transports.md).
        self._db.execute("PRAGMA synchronous = NORMAL")
        if on_loop:
            # Checkpoints copy pages and fsync: the thread's connection runs them.
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
            return
        self._db.execute("PRAGMA journal_mode = WAL")
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def call(self, name: str, *args: Any) -> Any:
        """Run method `name`; on the loop decline when busy, in the thread retry until deadline."""
        fn = getattr(self, name)
        give_up = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.00005
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise
                if self._on_loop:
                    raise _WantThread from None
                if time.monotonic() > give_up:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _register(self, queues: Iterable[str]) -> None:
        """Inside a transaction: `queues` exist from now on (listed, and `must_exist` passes)."""
        new = [(q,) for q in queues if q not in self._known]
        if new:
            self._db.executemany("INSERT OR IGNORE INTO queues (name) VALUES (?)", new)

    def declare(self, queue: str) -> None:
        """A consumer's declaration: the queue exists for `must_exist` senders from now on."""
        if queue not in self._known:
            with self._transaction():
                self._register([queue])
            self._known.add(queue)

    def exists(self, queue: str) -> bool:
        if queue in self._known:
            return True
        row = self._db.execute("SELECT 1 FROM queues WHERE name = ?", (queue,)).fetchone()
        if row is not None:
            self._known.add(queue)  # declarations are never taken back
        return row is not None

    def _require(self, queues: Iterable[str]) -> None:
        """Inside the send's transaction: raise `QueueMissing` (rolling back) for an undeclared
        queue, so a refused send writes nothing."""
        for queue in sorted(queues):
            if not self.exists(queue):
                raise QueueMissing(f"queue {queue!r} does not exist (no consumer has declared it)")

    def send(
        self, messages: Sequence[tuple[str, bytes]], delay: float, must_exist: bool = False
    ) -> None:
        if self._on_loop and sum(len(b) for _, b in messages) > _LOOP_BODY_BYTES:
            raise _WantThread
        visible_at = time.time() + max(delay, 0.0)
        queues = {q for q, _ in messages}
        with self._transaction():
            if must_exist:
                self._require(queues)
            self._register(queues)
            self._db.executemany(
                "INSERT INTO messages (queue, body, visible_at) VALUES (?, ?, ?)",
                [(q, b, visible_at) for q, b in messages],
            )
        self._known |= queues
        for queue in queues:
            self._ringer.ring(queue)

    def send_and_ack(
        self,
        messages: Sequence[tuple[str, bytes]],
        message_id: int,
        token: int,
        must_exist: bool = False,
    ) -> None:
        if self._on_loop and sum(len(b) for _, b in messages) > _LOOP_BODY_BYTES:
            raise _WantThread
        queues = {q for q, _ in messages}
        with self._transaction():
            if must_exist:
                self._require(queues)
            self._register(queues)
            now = time.time()
            self._db.executemany(
                "INSERT INTO messages (queue, body, visible_at) VALUES (?, ?, ?)",
                [(q, b, now) for q, b in messages],
            )
            cur = self._db.execute(
                "DELETE FROM messages WHERE id = ? AND lease = ?", (message_id, token)
            )
            if cur.rowcount != 1:  # rolls the outputs back too: the new holder redoes the work
                raise LeaseLost(f"message {message_id}: lease lapsed and it was redelivered")
        self._known |= queues
        for queue in queues:
            self._ringer.ring(queue)

    def lease(self, queue: str, seconds: float) -> tuple[_Leased | None, float | None]:
        """Lease the next visible message, or say when the next one becomes visible (epoch s)."""
        while True:
            now = time.time()
            row = self._db.execute(
                "SELECT id, length(body) FROM messages WHERE queue = ? AND visible_at <= ? "
                "ORDER BY visible_at, id LIMIT 1",
                (queue, now),
            ).fetchone()
            if row is None:
                (next_due,) = self._db.execute(
                    "SELECT MIN(visible_at) FROM messages WHERE queue = ?", (queue,)
                ).fetchone()
                if next_due is not None and next_due <= time.time():
                    continue  # became visible between the two reads
                return None, next_due
            if self._on_loop and row[1] > _LOOP_BODY_BYTES:
                raise _WantThread
            token = secrets.randbits(62)
            # The read above took no lock; the guarded UPDATE decides who wins the message.
            got = self._db.execute(
                "UPDATE messages SET visible_at = ?, attempt = attempt + 1, lease = ? "
                "WHERE id = ? AND visible_at <= ? RETURNING body, attempt",
                (now + seconds, token, row[0], now),
            ).fetchone()
            if got is not None:
                return (row[0], got[0], got[1], token), None

    def ack(self, message_id: int, token: int) -> None:
        cur = self._db.execute(
            "DELETE FROM messages WHERE id = ? AND lease = ?", (message_id, token)
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"message {message_id}: lease lapsed and it was redelivered")

    def requeue(self, queue: str, message_id: int, token: int, delay: float) -> None:
        cur = self._db.execute(
            "UPDATE messages SET visible_at = ?, lease = NULL WHERE id = ? AND lease = ?",
            (time.time() + max(delay, 0.0), message_id, token),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"message {message_id}: lease lapsed and it was redelivered")
        self._ringer.ring(queue)

    def extend(self, message_id: int, token: int, seconds: float) -> None:
        cur = self._db.execute(
            "UPDATE messages SET visible_at = ? WHERE id = ? AND lease = ?",
            (time.time() + seconds, message_id, token),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"message {message_id}: lease lapsed and it was redelivered")

    def depths(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT q.name, COUNT(m.id) FROM queues q LEFT JOIN messages m ON m.queue = q.name "
            "GROUP BY q.name ORDER BY q.name"
        ).fetchall()
        return {name: count for name, count in rows}

    def checkpoint(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._db.close()


class SqliteDelivery(Delivery):
    __slots__ = ("_queue", "_rowid", "_token", "_transport", "attempt", "body", "message_id")

    def __init__(self, transport: SqliteTransport, queue: str, leased: _Leased) -> None:
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
        self, fast: _Store, slow: _Store, ringer: Ringer, bells_dir: Path, lease_seconds: float
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
            slow = await anyio.to_thread.run_sync(partial(_Store, path, ringer, on_loop=False))
            fast = await anyio.to_thread.run_sync(partial(_Store, path, ringer, on_loop=True))
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
            except _WantThread:
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
