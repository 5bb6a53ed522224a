"""The transport contract: the smallest interface every queue backend implements.

Routing, retry policy and "ack only once the outputs are durable" live in the sidecar core,
never in a transport (as redirects live in httpx's client, not its transports).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Final

from .errors import MessageTooLarge

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

    @abc.abstractmethod
    async def send(self, queue: str, body: bytes, *, delay: float = 0.0) -> None:
        """Durably enqueue `body`; visible to consumers after `delay` seconds.

        Returns only once the transport has accepted the message durably (committed,
        publisher-confirmed, ...). Raises `TransportError` otherwise.
        """

    async def send_many(self, messages: Iterable[tuple[str, bytes]], *, delay: float = 0.0) -> None:
        """Durably enqueue several `(queue, body)` pairs; all are accepted when this returns.

        Transports that can do so commit them together (one transaction); the default sends
        them one by one. On error some may have been sent (at-least-once, never silent loss).
        """
        for queue, body in messages:
            await self.send(queue, body, delay=delay)

    async def send_then_ack(
        self, messages: Iterable[tuple[str, bytes]], delivery: Delivery
    ) -> None:
        """Durably enqueue `(queue, body)` pairs, then ack `delivery` (what produced them).

        The sidecar's "ack only once the outputs are durable" in one call. The default is
        `send_many` then `ack`; transports that can do both in one transaction override it
        (SQLite: all or nothing, and `LeaseLost` sends nothing if the lease went elsewhere).
        """
        await self.send_many(messages)
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
