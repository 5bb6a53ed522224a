"""How to reach the queues (`TransportConfig`), shared by the sidecar, the gateway and the tools."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from asya_runtime.durations import parse_duration

from .base import DEFAULT_LEASE_SECONDS

KINDS = ("sqlite", "rabbitmq", "sqs")


class TransportConfig(msgspec.Struct, kw_only=True, frozen=True):
    """How to reach the queues; shared by the sidecar, the gateway and the queue tools."""

    kind: str = "sqlite"  # sqlite | rabbitmq | sqs
    namespace: str = "default"
    sqlite_path: str = "./asya-queues.db"
    rabbitmq_url: str = "amqp://guest:guest@localhost:5672/"
    rabbitmq_exchange: str = "asya"
    rabbitmq_prefetch: int = 0  # 0 = twice the sidecar's concurrency
    #: "namespaced" (routing key = queue name: namespaces never cross) | "upstream" (actor name)
    rabbitmq_routing_keys: str = "namespaced"
    sqs_endpoint: str | None = None  # None = the AWS default endpoint
    aws_region: str = "us-east-1"
    sqs_visibility_timeout: float = 0.0  # seconds; 0 = 2 x actor timeout (set by the sidecar)
    sqs_wait_time_seconds: int = 20
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> TransportConfig:
        """Build from upstream's `ASYA_*` variables; `overrides` (CLI options) win.

        Raises `ValueError` naming the variable for a bad value.
        """
        raw: dict[str, object] = {}
        simple = {
            "ASYA_TRANSPORT": "kind",
            "ASYA_NAMESPACE": "namespace",
            "ASYA_SQLITE_PATH": "sqlite_path",
            "ASYA_RABBITMQ_URL": "rabbitmq_url",
            "ASYA_RABBITMQ_EXCHANGE": "rabbitmq_exchange",
            "ASYA_RABBITMQ_PREFETCH": "rabbitmq_prefetch",
            "ASYA_RABBITMQ_ROUTING_KEYS": "rabbitmq_routing_keys",
            "ASYA_SQS_ENDPOINT": "sqs_endpoint",
            "ASYA_AWS_REGION": "aws_region",
            "ASYA_SQS_WAIT_TIME_SECONDS": "sqs_wait_time_seconds",
        }
        for var, field in simple.items():
            if env.get(var):
                raw[field] = env[var]
        for var, field in (("ASYA_SQS_VISIBILITY_TIMEOUT", "sqs_visibility_timeout"),):
            if env.get(var):
                try:
                    raw[field] = parse_duration(env[var])
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from None
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid transport configuration: {exc}") from None
        if cfg.kind not in KINDS:
            raise ValueError(f"ASYA_TRANSPORT: unknown transport {cfg.kind!r} (one of {KINDS})")
        return cfg


__all__ = ["KINDS", "TransportConfig"]
