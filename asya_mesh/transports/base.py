"""The transport contract: the smallest interface every queue backend implements.

A queue exists once a consumer of it has declared it (`declare`, or implicitly its first
`receive`). A plain `send` still creates what it sends to (tools and tests enqueue before any
consumer runs); `must_exist=True` refuses a queue nobody declared with `QueueMissing`, which is
how the sidecar and the gateway tell an unknown actor from a slow one.

Routing, retry policy and "ack only once the outputs are durable" live in the sidecar core,
never in a transport (as redirects live in httpx's client, not its transports).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Final

from .errors import MessageTooLarge, QueueMissing

DEFAULT_LEASE_SECONDS: Final = 30.0


class Delivery(abc.ABC):
    """One received message, leased to this consumer until acked, requeued or the lease lapses."""

    body: bytes
    message_id: str
    attempt: int  # 1 on first delivery, +1 on every redelivery (crash, requeue, lease expiry)

    @abc.abstractmethod
    async def ack(self) -> None:
        """Remove the message for good."""

    @abc.abstractmethod
    async def requeue(self, delay: float = 0.0) -> None:
        """Give the message back untouched, visible again after `delay` seconds."""

    @abc.abstractmethod
    async def extend(self, seconds: float) -> None:
        """Keep the lease for `seconds` more from now (long handlers are not redelivered)."""


class Transport(abc.ABC):
    """A set of durable named queues."""

    #: Largest body `send` accepts; above it `send` raises `MessageTooLarge`.
    max_message_bytes: int
    #: Name used in error messages ("SQLite", "RabbitMQ", ...).
    label: str = "queue"

    def check_size(self, body: bytes) -> None:
        """Raise `MessageTooLarge` naming the limit if `body` is over it."""
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(
                f"message of {len(body)} bytes exceeds the {self.label} transport limit of "
                f"{self.max_message_bytes} bytes"
            )

    def missing(self, queue: str) -> QueueMissing:
        """The error `must_exist` sends raise for `queue`."""
        return QueueMissing(f"queue {queue!r} does not exist (no consumer has declared it)")

    async def declare(self, queue: str) -> None:
        """Create `queue` if it does not exist: what a consumer does before receiving.

        Idempotent. `receive` declares its queue implicitly too. Every backend here overrides
        this and `exists`; the defaults (a no-op, every queue exists) only keep test doubles
        and third-party transports working as before: `must_exist` then never refuses.
        """
        return None

    async def exists(self, queue: str) -> bool:
        """Whether `queue` exists (declared by a consumer, or created by a plain `send`)."""
        return True

    @abc.abstractmethod
    async def send(
        self, queue: str, body: bytes, *, delay: float = 0.0, must_exist: bool = False
    ) -> None:
        """Durably enqueue `body`; visible to consumers after `delay` seconds.

        Returns only once the transport has accepted the message durably (committed,
        publisher-confirmed, ...). Raises `TransportError` otherwise. `must_exist=True`:
        raise `QueueMissing` naming `queue`, sending nothing, if it does not exist (without
        it `send` creates the queue, as it always has).
        """

    async def send_many(
        self,
        messages: Iterable[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        must_exist: bool = False,
    ) -> None:
        """Durably enqueue several `(queue, body)` pairs; all are accepted when this returns.

        Transports that can do so commit them together (one transaction); the default sends
        them one by one. On error some may have been sent (at-least-once, never silent loss).
        `must_exist=True`: every queue is checked before anything is sent; a missing one
        raises `QueueMissing` naming it.
        """
        batch = list(messages)
        if must_exist:
            for queue in dict.fromkeys(q for q, _ in batch):
                if not await self.exists(queue):
                    raise self.missing(queue)
        for queue, body in batch:
            await self.send(queue, body, delay=delay)

    async def send_then_ack(
        self,
        messages: Iterable[tuple[str, bytes]],
        delivery: Delivery,
        *,
        must_exist: bool = False,
    ) -> None:
        """Durably enqueue `(queue, body)` pairs, then ack `delivery` (what produced them).

        The sidecar's "ack only once the outputs are durable" in one call. The default is
        `send_many` then `ack`; transports that can do both in one transaction override it
        (SQLite: all or nothing, and `LeaseLost` sends nothing if the lease went elsewhere).
        `must_exist=True`: a missing queue raises `QueueMissing` and `delivery` stays unacked.
        """
        await self.send_many(messages, must_exist=must_exist)
        await delivery.ack()

    @abc.abstractmethod
    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        """Lease the next visible message, waiting up to `wait` seconds; `None` if none came.

        Safe to call from many tasks at once: no two callers ever hold the same message.
        """

    @abc.abstractmethod
    async def depths(self) -> dict[str, int]:
        """Messages per known queue (ready + leased + delayed), for `queue ls`."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections; leased messages become visible again after their lease."""


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "Delivery",
    "Transport",
]
