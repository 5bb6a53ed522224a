"""The queue layer: one module per backend, all behind `base.Transport`; errors in `errors`."""

from __future__ import annotations

from ..names import queue_name
from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport
from .config import KINDS, TransportConfig
from .errors import LeaseLost, MessageTooLarge, QueueMissing, TransportError


def prefetch_for(concurrency: int) -> int:
    """RabbitMQ prefetch for a consumer holding `concurrency` deliveries at once."""
    return 2 * max(concurrency, 1)


async def open_transport(config: TransportConfig, *, concurrency: int = 1) -> Transport:
    """Connect the transport `config.kind` names; raises `ValueError` for an unknown kind.

    `concurrency` is how many deliveries the caller holds at once. RabbitMQ's prefetch, when
    `rabbitmq_prefetch` is 0, is twice that: the next delivery is already on its way while
    one is acked, instead of a broker round trip later. Broker modules are imported only when
    chosen, so the embedded transport needs neither aio-pika nor aiobotocore.
    """
    if config.kind == "sqlite":
        from .sqlite import SqliteTransport

        return await SqliteTransport.open(config.sqlite_path, lease_seconds=config.lease_seconds)
    if config.kind == "rabbitmq":
        from .rabbitmq import RabbitMQTransport

        prefetch = config.rabbitmq_prefetch or prefetch_for(concurrency)
        return await RabbitMQTransport.open(config, prefetch=prefetch)
    if config.kind == "sqs":
        from .sqs import SqsTransport

        return await SqsTransport.open(config)
    raise ValueError(f"unknown transport {config.kind!r} (one of {KINDS})")


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "KINDS",
    "Delivery",
    "LeaseLost",
    "MessageTooLarge",
    "QueueMissing",
    "Transport",
    "TransportConfig",
    "TransportError",
    "open_transport",
    "prefetch_for",
    "queue_name",
]
