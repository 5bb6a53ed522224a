"""Queue transports: one module per backend, all behind `base.Transport`."""

from __future__ import annotations

import msgspec

from .base import DEFAULT_LEASE_SECONDS, Delivery, Transport, queue_name


class TransportConfig(msgspec.Struct, kw_only=True, frozen=True):
    """How to reach the queues; shared by the sidecar, the gateway and the queue tools."""

    kind: str = "sqlite"  # sqlite | rabbitmq | sqs
    sqlite_path: str = "./asya-queues.db"
    rabbitmq_url: str = "amqp://guest:guest@localhost:5672/"
    rabbitmq_exchange: str = "asya"
    rabbitmq_prefetch: int = 0  # 0 = the sidecar's concurrency
    sqs_endpoint: str | None = None
    aws_region: str = "us-east-1"
    sqs_visibility_timeout: float = 0.0  # 0 = 2 x actor timeout (set by the sidecar)
    sqs_wait_time_seconds: int = 20
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    namespace: str = "default"


async def open_transport(config: TransportConfig) -> Transport:
    """Connect the transport `config.kind` names; raises `ValueError` for an unknown kind."""
    raise NotImplementedError  # filled in by the transports work


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "Delivery",
    "Transport",
    "TransportConfig",
    "open_transport",
    "queue_name",
]
