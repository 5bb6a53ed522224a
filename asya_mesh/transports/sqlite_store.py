"""The embedded transport's SQL: one blocking connection (`Store`), on the loop or in a thread."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from .doorbell import Ringer
from .errors import LeaseLost, QueueMissing

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

Leased = tuple[int, bytes, int, int]  # id, body, attempt, lease token
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
#: Bodies above this are read and written in the worker thread, not on the event loop.
LOOP_BODY_BYTES: Final = 256 * 1024


class WantThread(Exception):
    """The event-loop fast path declines (lock held elsewhere, large body): use the thread."""


class Store:
    """Blocking SQL on one connection.

    Two per transport: `on_loop` runs on the event loop and never waits (busy timeout 0, no
    checkpoints, small bodies only), declining with `WantThread`; the other runs in a worker
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
                    raise WantThread from None
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
        if self._on_loop and sum(len(b) for _, b in messages) > LOOP_BODY_BYTES:
            raise WantThread
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
        if self._on_loop and sum(len(b) for _, b in messages) > LOOP_BODY_BYTES:
            raise WantThread
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

    def lease(self, queue: str, seconds: float) -> tuple[Leased | None, float | None]:
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
            if self._on_loop and row[1] > LOOP_BODY_BYTES:
                raise WantThread
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


__all__ = ["BUSY_TIMEOUT_MS", "LOOP_BODY_BYTES", "Leased", "Store", "WantThread"]
