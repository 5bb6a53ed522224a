"""How to reach the queues (`TransportConfig`), shared by the sidecar, the gateway and the tools.

Each option is declared once here (variable, default, help); `asya_runtime.settings` derives
the environment reading, the CLI options and the docs from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from asya_runtime.settings import load, one_of, opt

from ..names import validate_namespace
from .base import DEFAULT_LEASE_SECONDS

KINDS = ("sqlite", "rabbitmq", "sqs")


class TransportConfig(msgspec.Struct, kw_only=True, frozen=True):
    """How to reach the queues; shared by the sidecar, the gateway and the queue tools."""

    kind: Annotated[
        str,
        opt(
            "ASYA_TRANSPORT",
            "queue transport: sqlite (embedded), rabbitmq or sqs",
            flag="--transport",
            check=one_of(*KINDS),
        ),
    ] = "sqlite"
    namespace: Annotated[
        str, opt("ASYA_NAMESPACE", "queue namespace", check=validate_namespace)
    ] = "default"
    sqlite_path: Annotated[
        str, opt("ASYA_SQLITE_PATH", "the embedded transport's database file", metavar="PATH")
    ] = "./asya-queues.db"
    rabbitmq_url: Annotated[str, opt("ASYA_RABBITMQ_URL", "RabbitMQ URL", metavar="URL")] = (
        "amqp://guest:guest@localhost:5672/"
    )
    rabbitmq_exchange: Annotated[
        str, opt("ASYA_RABBITMQ_EXCHANGE", "RabbitMQ exchange", metavar="NAME")
    ] = "asya"
    rabbitmq_prefetch: Annotated[
        int,
        opt(
            "ASYA_RABBITMQ_PREFETCH",
            "RabbitMQ prefetch (0 = the sidecar's concurrency)",
            default_text="concurrency",
            ge=0,
        ),
    ] = 0
    sqs_endpoint: Annotated[
        str | None,
        opt(
            "ASYA_SQS_ENDPOINT",
            "SQS endpoint URL (e.g. moto, LocalStack)",
            metavar="URL",
            default_text="AWS default",
        ),
    ] = None
    aws_region: Annotated[str, opt("ASYA_AWS_REGION", "SQS region", metavar="REGION")] = "us-east-1"
    sqs_visibility_timeout: Annotated[
        float,
        opt(
            "ASYA_SQS_VISIBILITY_TIMEOUT",
            "SQS visibility timeout (0 = 2 x the actor timeout)",
            duration=True,
            default_text="2 x actor timeout",
            ge=0,
        ),
    ] = 0.0
    sqs_wait_time_seconds: Annotated[
        int, opt("ASYA_SQS_WAIT_TIME_SECONDS", "SQS long-poll seconds", ge=0, le=20)
    ] = 20
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> TransportConfig:
        """Build from upstream's `ASYA_*` variables; `overrides` (by field name) win.

        Raises `ValueError` naming the variable for a bad value.
        """
        given = {k: v for k, v in overrides.items() if v is not None and k != "lease_seconds"}
        cfg = load(cls, env, given)
        if "lease_seconds" in overrides and overrides["lease_seconds"] is not None:
            cfg = msgspec.structs.replace(cfg, lease_seconds=float(overrides["lease_seconds"]))
        return cfg


__all__ = ["KINDS", "TransportConfig"]
