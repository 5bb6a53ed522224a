"""An in-process transport for tests (the spirit of httpx's `MockTransport`): the full contract,
no durability, no other process. Several `MemoryTransport`s sharing one `MemoryQueues` behave
like several connections to one broker (leases, redelivery, `LeaseLost`).

A message is visible when `visible_at <= now` (anyio's clock); leasing pushes `visible_at` to the
lease expiry, so an unacked message comes back by itself, `attempt + 1`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Final

import anyio
import anyio.lowlevel

from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport
from .errors import LeaseLost, TransportError

MAX_MESSAGE_BYTES: Final = 1024 * 1024


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
    __slots__ = ("_m", "_q", "_queue", "_token", "attempt", "body", "message_id")

    def __init__(self, q: MemoryQueues, queue: str, m: _Message) -> None:
        self._q, self._queue, self._m, self._token = q, queue, m, m.lease
        self.body, self.message_id, self.attempt = m.body, str(m.id), m.attempt

    async def ack(self) -> None:
        self._q.find(self._queue, self._m, self._token).remove(self._m)

    async def requeue(self, delay: float = 0.0) -> None:
        self._q.find(self._queue, self._m, self._token)
        self._m.visible_at = anyio.current_time() + max(delay, 0.0)
        self._m.lease = -self._m.lease  # the old token no longer settles it
        self._q.wake()

    async def extend(self, seconds: float) -> None:
        self._q.find(self._queue, self._m, self._token)
        self._m.visible_at = anyio.current_time() + seconds


class MemoryTransport(Transport):
    """One "connection" to `queues` (a fresh set of queues when not given)."""

    label = "memory"

    def __init__(
        self,
        queues: MemoryQueues | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.queues = queues if queues is not None else MemoryQueues()
        self.lease_seconds = lease_seconds
        self.max_message_bytes = max_message_bytes
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
        batch = list(messages)
        self._check_open()
        for queue, body in batch:  # all or nothing, like one transaction
            self.check_size(body)
            if must_exist and queue not in self.queues.queues:
                raise self.missing(queue)
        for queue, body in batch:
            self.queues.put(queue, body, max(delay, 0.0))
        await anyio.lowlevel.checkpoint()

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
        await self.send_many(batch, must_exist=must_exist)
        await delivery.ack()

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
                    return MemoryDelivery(q, queue, m)
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


__all__ = ["MemoryDelivery", "MemoryQueues", "MemoryTransport"]
