"""An in-process transport for tests (the spirit of httpx's `MockTransport`): the full contract,
no durability, no other process. Several `MemoryTransport`s sharing one `MemoryQueues` behave
like several connections to one broker (leases, redelivery, `LeaseLost`).

A message is visible when `visible_at <= now` (anyio's clock); leasing pushes `visible_at` to the
lease expiry, so an unacked message comes back by itself, `attempt + 1`.

Test knobs, all off by default: `max_message_bytes`; `on_send`, which sees each batch about to
be enqueued and may refuse it by raising (a broker rejecting a queue, a body over its limit);
`on_extend`, which sees each lease extension first and may fail it; `lapse(delivery)`, which
ends a lease at once as if it ran out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Final

import anyio
import anyio.lowlevel

from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport
from .errors import LeaseLost, TransportError

MAX_MESSAGE_BYTES: Final = 1024 * 1024

#: `on_send(messages, acking)`: `acking` is the delivery `send_then_ack` settles, else None.
OnSend = Callable[[list[tuple[str, bytes]], Delivery | None], None]
#: `on_extend(seconds)`, called before the lease is checked.
OnExtend = Callable[[float], None]


class _Message:
    __slots__ = ("attempt", "body", "id", "lease", "visible_at")

    def __init__(self, mid: int, body: bytes, visible_at: float) -> None:
        self.id, self.body, self.visible_at = mid, body, visible_at
        self.attempt = 0
        self.lease = 0  # token of the current lease; 0 = never leased


class MemoryQueues:
    """The shared "broker": named queues of messages, in send order."""

    def __init__(self) -> None:
        self.queues: dict[str, list[_Message]] = {}
        self.changed = anyio.Event()  # replaced after every change that may wake a receiver
        self._ids = itertools.count(1)

    def put(self, queue: str, body: bytes, delay: float) -> None:
        now = anyio.current_time()
        self.queues.setdefault(queue, []).append(_Message(next(self._ids), body, now + delay))
        self.wake()

    def token(self) -> int:
        return next(self._ids)

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def find(self, queue: str, m: _Message, token: int) -> list[_Message]:
        msgs = self.queues.get(queue, [])
        if m.lease != token or m not in msgs:
            raise LeaseLost(f"message {m.id}: lease lapsed and it was redelivered")
        return msgs


class MemoryDelivery(Delivery):
    __slots__ = ("_m", "_on_extend", "_q", "_queue", "_token", "attempt", "body", "message_id")

    def __init__(
        self, q: MemoryQueues, queue: str, m: _Message, on_extend: OnExtend | None = None
    ) -> None:
        self._q, self._queue, self._m, self._token = q, queue, m, m.lease
        self.body, self.message_id, self.attempt = m.body, str(m.id), m.attempt
        self._on_extend = on_extend

    async def ack(self) -> None:
        self._q.find(self._queue, self._m, self._token).remove(self._m)

    async def requeue(self, delay: float = 0.0) -> None:
        self._q.find(self._queue, self._m, self._token)
        self._m.visible_at = anyio.current_time() + max(delay, 0.0)
        self._m.lease = -self._m.lease  # the old token no longer settles it
        self._q.wake()

    async def extend(self, seconds: float) -> None:
        if self._on_extend is not None:
            self._on_extend(seconds)
        self._q.find(self._queue, self._m, self._token)
        self._m.visible_at = anyio.current_time() + seconds

    def lapse(self) -> None:
        """The lease runs out now: the message is visible again, this delivery stale."""
        if self._m.lease == self._token:
            self._m.lease = -self._m.lease
            self._m.visible_at = anyio.current_time()
            self._q.wake()


class MemoryTransport(Transport):
    """One "connection" to `queues` (a fresh set of queues when not given)."""

    label = "memory"

    def __init__(
        self,
        queues: MemoryQueues | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        on_send: OnSend | None = None,
        on_extend: OnExtend | None = None,
    ) -> None:
        self.queues = queues if queues is not None else MemoryQueues()
        self.lease_seconds = lease_seconds
        self.max_message_bytes = max_message_bytes
        self.on_send = on_send
        self.on_extend = on_extend
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("memory transport is closed")

    async def declare(self, queue: str) -> None:
        self._check_open()
        self.queues.queues.setdefault(queue, [])

    async def exists(self, queue: str) -> bool:
        return queue in self.queues.queues

    async def send(
        self, queue: str, body: bytes, *, delay: float = 0.0, must_exist: bool = False
    ) -> None:
        await self.send_many([(queue, body)], delay=delay, must_exist=must_exist)

    async def send_many(
        self,
        messages: Iterable[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        must_exist: bool = False,
    ) -> None:
        self._enqueue(list(messages), delay, must_exist, None)
        await anyio.lowlevel.checkpoint()

    def _enqueue(
        self,
        batch: list[tuple[str, bytes]],
        delay: float,
        must_exist: bool,
        acking: Delivery | None,
    ) -> None:
        self._check_open()
        for queue, body in batch:  # all or nothing, like one transaction
            self.check_size(body)
            if must_exist and queue not in self.queues.queues:
                raise self.missing(queue)
        if self.on_send is not None:
            self.on_send(batch, acking)
        for queue, body in batch:
            self.queues.put(queue, body, max(delay, 0.0))

    async def send_then_ack(
        self,
        messages: Iterable[tuple[str, bytes]],
        delivery: Delivery,
        *,
        must_exist: bool = False,
    ) -> None:
        batch = list(messages)
        if isinstance(delivery, MemoryDelivery):  # LeaseLost sends nothing, as on SQLite
            delivery._q.find(delivery._queue, delivery._m, delivery._token)
        self._enqueue(batch, 0.0, must_exist, delivery)
        await anyio.lowlevel.checkpoint()
        await delivery.ack()

    def lapse(self, delivery: Delivery) -> None:
        """End `delivery`'s lease now, as if it ran out: its message is visible again (the
        next receive gets it, `attempt + 1`) and `delivery` can no longer settle or extend it
        (`LeaseLost`)."""
        if not isinstance(delivery, MemoryDelivery):
            raise TypeError(f"not a memory delivery: {delivery!r}")
        delivery.lapse()

    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        self._check_open()
        q = self.queues
        deadline = anyio.current_time() + wait
        while True:
            now = anyio.current_time()
            msgs = q.queues.setdefault(queue, [])
            for m in msgs:
                if m.visible_at <= now:
                    m.attempt += 1
                    m.lease = q.token()
                    m.visible_at = now + self.lease_seconds
                    return MemoryDelivery(q, queue, m, self.on_extend)
            nearest = min([deadline, *(m.visible_at for m in msgs)])
            if now >= deadline:
                await anyio.lowlevel.checkpoint()
                return None
            with anyio.move_on_after(nearest - now):
                await q.changed.wait()

    async def depths(self) -> dict[str, int]:
        return {name: len(msgs) for name, msgs in self.queues.queues.items()}

    async def aclose(self) -> None:
        self._closed = True


__all__ = ["MemoryDelivery", "MemoryQueues", "MemoryTransport", "OnExtend", "OnSend"]
