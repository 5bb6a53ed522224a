"""The event bus between replicas: what one gateway ingests, every gateway on the database
publishes. `LocalBus` (one process) delivers at once; `PgBus` goes through PostgreSQL
`LISTEN`/`NOTIFY` so every replica, the sender included, sees one order.

A message is a FLY or a stored change, plus an event id every replica agrees on: PostgreSQL
numbers it (`nextval`) under a per-task advisory lock, so ids grow in delivery order. Payloads
over NOTIFY's limit travel by reference (a row in `asya_bus_blobs`, fetched by the receivers).
Publishing is batched: one flusher task sends everything that piled up while the previous
transaction was in flight in one transaction (at 1,000 FLY/s, one transaction per FLY was
four round trips each and queued for a second).
A lost listening connection ends every stream (clients resume with `Last-Event-ID`, on any
replica) and is reconnected; nothing waits silently on a dead connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import anyio
import anyio.lowlevel
import msgspec
import structlog

from asya_mesh.events import FlyEvent

from .state import TaskRecord

_log = structlog.get_logger("asya_gateway.bus")
CHANNEL: Final = "asya_gateway_events"
#: messages a local bus delivers between two chances for the streams to write.
LOCAL_SLICE: Final = 64
#: NOTIFY's payload limit is 8,000 bytes; keep a margin for the id prefix.
INLINE_MAX: Final = 7_000


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One bus message: a FLY (`fly` set) or a stored change (`record` set)."""

    task: str
    record: TaskRecord | None = None
    fly: msgspec.Raw = msgspec.Raw(b"null")  # the FLY dict's bytes (when `record` is None)
    seq: int | None = None
    n: int = 1


#: Called for every message, in bus order, with the id all replicas give it (None: local).
Deliver = Callable[[Message, "int | None"], None]
#: Called when the bus lost messages (reconnect): streams must be ended.
Lost = Callable[[], None]

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Message)


class Bus(Protocol):
    id_floor: int  # bus ids issued from now on are above this (0: the bus gives no ids)

    async def publish(self, msg: Message) -> None: ...

    async def publish_many(self, msgs: list[Message]) -> None:
        """Published in this order; returns once every replica will see them."""
        ...

    async def run(self, deliver: Deliver, lost: Lost, started: Callable[[], None]) -> None:
        """Deliver messages until cancelled; calls `started` once listening."""
        ...


def fly_message(task_id: str, event: FlyEvent) -> Message:
    return Message(task=task_id, fly=event.data, seq=event.seq, n=event.n)


class LocalBus:
    """One gateway process: delivered at once, ids given by the registry."""

    id_floor = 0

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def publish(self, msg: Message) -> None:
        if self._deliver is not None:
            self._deliver(msg, None)

    async def publish_many(self, msgs: list[Message]) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        for start in range(0, len(msgs), LOCAL_SLICE):
            if start:
                # Let the streams write what is delivered so far: the first FLY of a burst of
                # 1,000 reached its client after the whole burst (~6 ms), now after a slice.
                await anyio.lowlevel.checkpoint()
            for msg in msgs[start : start + LOCAL_SLICE]:  # no coroutine per message
                deliver(msg, None)

    async def run(self, deliver: Deliver, lost: Lost, started: Callable[[], None]) -> None:
        self._deliver = deliver
        started()
        await anyio.sleep_forever()


class _Batch:
    """Messages waiting for the flusher, and how their publishers learn the outcome."""

    __slots__ = ("done", "error", "messages")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.done = anyio.Event()
        self.error: Exception | None = None


class PgBus:
    """PostgreSQL LISTEN/NOTIFY between replicas on one database."""

    #: messages per transaction at most (a bigger pile goes in several, in order).
    MAX_BATCH: Final = 1000

    def __init__(self, url: str, *, ping_seconds: float = 1.0) -> None:
        self.url = url
        self.ping_seconds = ping_seconds
        self._pool: Any = None
        self.reconnects = 0
        self.failed_connects = 0  # attempts to LISTEN that failed (before or after the first)
        self.id_floor = 0  # every id issued after start is above this
        self.transactions = 0  # publish transactions committed (batching shows as fewer)
        self._open = _Batch()
        self._wake = anyio.Event()
        self._flushing = False  # the flusher runs (inside `run`); else publishers flush

    async def _pool_(self) -> Any:
        import asyncpg

        from .store.postgres import SCHEMA_LOCK

        if self._pool is None:
            pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
            try:
                async with pool.acquire() as conn, conn.transaction():
                    # IF NOT EXISTS is not safe against a concurrent CREATE (replicas starting
                    # together on a new database): serialize on the store's migration lock.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                    await conn.execute(
                        "CREATE SEQUENCE IF NOT EXISTS asya_bus_ids;"
                        " CREATE TABLE IF NOT EXISTS asya_bus_blobs (id BIGSERIAL PRIMARY KEY,"
                        " body TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
        return self._pool

    async def open(self) -> None:
        """Connect and create the bus's objects (the first publish or `run` does it too)."""
        await self._pool_()

    async def publish(self, msg: Message) -> None:
        await self.publish_many([msg])

    async def publish_many(self, msgs: list[Message]) -> None:
        if not msgs:
            return
        if not self._flushing:  # not running (yet): no one to hand them to
            await self._send(msgs)
            return
        batch = self._open
        batch.messages.extend(msgs)
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def _flush_forever(self) -> None:
        """The flusher: each round takes everything published since the last one."""
        self._flushing = True
        batch = self._open
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                batch, self._open = self._open, _Batch()
                try:
                    await self._send(batch.messages)
                except Exception as exc:  # the publishers raise it (FLYs: counted, dropped)
                    batch.error = exc
                batch.done.set()
        finally:
            self._flushing = False
            for left in (batch, self._open):  # nobody waits forever on a stopped bus
                if not left.done.is_set():
                    left.error = OSError("the event bus stopped")
                    left.done.set()

    async def _send(self, msgs: list[Message]) -> None:
        for i in range(0, len(msgs), self.MAX_BATCH):
            await self._transaction(msgs[i : i + self.MAX_BATCH])

    async def _transaction(self, msgs: list[Message]) -> None:
        bodies = [_encoder.encode(m).decode() for m in msgs]
        pool = await self._pool_()
        async with pool.acquire() as conn, conn.transaction():
            # Held until commit, when the NOTIFYs are queued: per task, ids grow in delivery
            # order. Taken in one order (by key) so two replicas never wait on each other.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM"
                " (SELECT DISTINCT hashtext(t) AS k FROM unnest($1::text[]) AS t ORDER BY 1) s",
                sorted({m.task for m in msgs}),
            )
            for i, body in enumerate(bodies):
                if len(body.encode()) > INLINE_MAX:
                    ref = await conn.fetchval(
                        "INSERT INTO asya_bus_blobs (body) VALUES ($1) RETURNING id", body
                    )
                    bodies[i] = f"@{ref}"
            # One statement for the lot; ids are drawn in the array's order (no sort).
            await conn.execute(
                "SELECT pg_notify($1, nextval('asya_bus_ids')::text || ' ' || b)"
                " FROM unnest($2::text[]) WITH ORDINALITY AS u(b, i)",
                CHANNEL,
                bodies,
            )
        self.transactions += 1

    async def run(self, deliver: Deliver, lost: Lost, started: Callable[[], None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._flush_forever)
            await self._listen_forever(deliver, lost, started)

    async def _listen_forever(
        self, deliver: Deliver, lost: Lost, started: Callable[[], None]
    ) -> None:
        import asyncpg

        listened = False  # `started` is due until the first LISTEN succeeds, however late

        def first_listen() -> None:
            nonlocal listened
            listened = True
            started()

        while True:
            try:
                await self._listen(deliver, lost, None if listened else first_listen)
            except* (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as eg:
                self.failed_connects += 1
                what = "lost" if listened else "not reached yet"
                _log.warning(f"bus connection {what}; reconnecting", error=str(eg.exceptions[0]))
            if listened:
                self.reconnects += 1
                lost()  # whatever was sent meanwhile is gone: end the streams
            await anyio.sleep(0.5)

    async def _listen(
        self, deliver: Deliver, lost: Lost, started: Callable[[], None] | None
    ) -> None:
        import asyncpg

        pool = await self._pool_()
        conn = await asyncpg.connect(self.url)
        send, receive = anyio.create_memory_object_stream[str](10_000)

        def on_notify(_c: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                send.send_nowait(payload)
            except anyio.WouldBlock:
                send.close()  # overflow: treat as a lost connection (streams end, clients resume)

        try:
            await conn.add_listener(CHANNEL, on_notify)
            # Ids keep growing across restarts: lift the sequence to the microseconds since the
            # epoch, so an id from before any restart is below every id issued from now on.
            self.id_floor = int(
                await conn.fetchval(
                    "SELECT setval('asya_bus_ids', greatest((SELECT last_value FROM asya_bus_ids),"
                    " (extract(epoch FROM clock_timestamp()) * 1000000)::bigint))"
                )
            )
            if started is not None:
                started()
            else:
                lost()  # listening again: streams opened during the gap may have missed events
            async with anyio.create_task_group() as tg:

                async def ping() -> None:
                    # A dead connection tells nothing by itself: ask it, and give up quickly.
                    beats = 0
                    while True:
                        await anyio.sleep(self.ping_seconds)
                        with anyio.fail_after(self.ping_seconds * 3):
                            await conn.fetchval("SELECT 1")
                        beats += 1
                        if beats % 60 == 0:  # blobs are read within moments; keep 5 minutes
                            await pool.execute(
                                "DELETE FROM asya_bus_blobs WHERE at < now() - interval '5 min'"
                            )

                async def consume() -> None:
                    async with receive:
                        async for payload in receive:
                            eid, _, body = payload.partition(" ")
                            if body.startswith("@"):
                                body = await pool.fetchval(
                                    "SELECT body FROM asya_bus_blobs WHERE id = $1", int(body[1:])
                                )
                                if body is None:
                                    continue
                            try:
                                deliver(_decoder.decode(body), int(eid))
                            except (msgspec.DecodeError, ValueError) as exc:  # one bad message
                                _log.warning("bus message dropped", error=str(exc))
                    raise OSError("bus listener overflowed")

                async def first_wins(fn: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await fn()
                    finally:
                        tg.cancel_scope.cancel()

                tg.start_soon(first_wins, ping)
                tg.start_soon(first_wins, consume)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await conn.close()

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


__all__ = ["CHANNEL", "INLINE_MAX", "Bus", "LocalBus", "Message", "PgBus", "fly_message"]
