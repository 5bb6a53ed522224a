"""How to reach the queues (`TransportConfig`), shared by the sidecar, the gateway and the tools.

Each option is declared once here (variable, default, help); `asya_runtime.settings` derives
the environment reading, the CLI options and the docs from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec

from asya_runtime.settings import load, one_of, opt

from ..names import validate_namespace
from .base import DEFAULT_LEASE_SECONDS

KINDS = ("sqlite", "rabbitmq", "sqs")


def _amqp_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"expected amqp://USER:PASSWORD@HOST:PORT/VHOST, got {redact_url(url)!r}")
    return url


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    return url


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


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
    rabbitmq_url: Annotated[
        str, opt("ASYA_RABBITMQ_URL", "RabbitMQ URL", metavar="URL", check=_amqp_url)
    ] = "amqp://guest:guest@localhost:5672/"
    rabbitmq_exchange: Annotated[
        str, opt("ASYA_RABBITMQ_EXCHANGE", "RabbitMQ exchange", metavar="NAME")
    ] = "asya"
    rabbitmq_prefetch: Annotated[
        int,
        opt(
            "ASYA_RABBITMQ_PREFETCH",
            "RabbitMQ prefetch (0 = the sidecar's concurrency, as the spec says)",
            default_text="concurrency",
            ge=0,
        ),
    ] = 0
    rabbitmq_routing_keys: Annotated[
        str,
        opt(
            "ASYA_RABBITMQ_ROUTING_KEYS",
            "namespaced (routing key = queue name: namespaces never cross) or upstream (actor)",
            metavar="LAYOUT",
            check=one_of("namespaced", "upstream"),
        ),
    ] = "namespaced"
    sqs_endpoint: Annotated[
        str | None,
        opt(
            "ASYA_SQS_ENDPOINT",
            "SQS endpoint URL (e.g. moto, LocalStack)",
            metavar="URL",
            default_text="AWS default",
            check=_http_url,
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

    @property
    def address(self) -> str:
        """Where the queues are, for one-line messages (the password hidden)."""
        if self.kind == "rabbitmq":
            return f"RabbitMQ at {redact_url(self.rabbitmq_url)}"
        if self.kind == "sqs":
            return f"SQS at {self.sqs_endpoint or 'the AWS default endpoint'} ({self.aws_region})"
        return f"the queue file {self.sqlite_path}"

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


async def probe_transport(cfg: TransportConfig) -> None:
    """Open the queues once and ask one question (an SQS client connects only when used), so
    a broker that cannot be reached is one line at start-up. Raises `TransportError`/`OSError`."""
    from . import open_transport  # the package imports this module: import at call time

    t = await open_transport(cfg)
    try:
        if cfg.kind == "sqs":
            await t.depths()
    finally:
        with anyio.CancelScope(shield=True):
            await t.aclose()


__all__ = ["KINDS", "TransportConfig", "probe_transport", "redact_url"]
