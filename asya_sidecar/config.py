"""The sidecar's configuration: one frozen Struct, each option declared once with its help.

`asya_runtime.settings` derives the environment reading, the `run` options, `--help` and
docs/configuration.md from these declarations. Only `cli.py` calls `from_env` with
`os.environ`; everything below takes a `SidecarConfig`. Every bad value raises `ValueError`
naming the variable (or the flag it came from).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from asya_mesh.names import validate_actor_name
from asya_mesh.transports import TransportConfig
from asya_runtime.settings import ConfigError, load, one_of, opt, options

from .resiliency import Resiliency, parse_policies, parse_rules

LOG_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    return url


def _addr(addr: str) -> str:
    _host, sep, port = addr.rpartition(":")
    if addr and (not sep or not port.isdigit() or not 0 <= int(port) < 65536):
        raise ValueError(f"expected host:port or :port, got {addr!r}")
    return addr


class SidecarConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything `asya-sidecar run` needs. Durations are seconds."""

    actor_name: Annotated[
        str,
        opt(
            "ASYA_ACTOR_NAME",
            "the actor this sidecar serves (queue asya-NAMESPACE-NAME)",
            metavar="NAME",
            check=validate_actor_name,
        ),
    ]
    transport: TransportConfig = TransportConfig()
    socket_dir: Annotated[
        str,
        opt("ASYA_SOCKET_DIR", "directory of the runtime socket and runtime-ready", metavar="DIR"),
    ] = "/var/run/asya"
    socket_name: Annotated[
        str, opt("ASYA_SOCKET_NAME", "the runtime socket's file name", metavar="NAME")
    ] = "asya-runtime.sock"
    runtime_ready_timeout: Annotated[
        float,
        opt(
            "ASYA_RUNTIME_READY_TIMEOUT",
            "wait this long for runtime-ready and hello, then exit 4",
            duration=True,
            gt=0,
        ),
    ] = 300.0
    concurrency: Annotated[
        int, opt("ASYA_CONCURRENCY", "envelopes in flight (one runtime connection each)", ge=1)
    ] = 1
    actor_timeout: Annotated[
        float,
        opt("ASYA_RESILIENCY_ACTOR_TIMEOUT", "per-invocation timeout", duration=True, gt=0),
    ] = 300.0
    resiliency_policies: Annotated[
        str | None,
        opt(
            "ASYA_RESILIENCY_POLICIES",
            "upstream's JSON retry policies {name: {maxAttempts, backoff, ...}}",
            metavar="JSON",
            default_text="unset (one attempt)",
        ),
    ] = None
    resiliency_rules: Annotated[
        str | None,
        opt(
            "ASYA_RESILIENCY_RULES",
            "upstream's JSON rules [{errors: [patterns], policy: name}], first match wins",
            metavar="JSON",
        ),
    ] = None
    resiliency: Resiliency | None = None  # parsed from the two above by `from_env`
    sink: Annotated[
        str,
        opt(
            "ASYA_ACTOR_SINK",
            "end queue for results and failures",
            flag="--actor-sink",
            metavar="NAME",
            check=validate_actor_name,
        ),
    ] = "x-sink"
    sump: Annotated[
        str,
        opt(
            "ASYA_ACTOR_SUMP",
            "end queue for infrastructure failures",
            flag="--actor-sump",
            metavar="NAME",
            check=validate_actor_name,
        ),
    ] = "x-sump"
    gateway_url: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_URL",
            "gateway base URL (the x-asya-gateway-url header overrides it)",
            metavar="URL",
            check=_http_url,
        ),
    ] = None
    gateway_token: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_TOKEN",
            "the gateway's mesh token (its ASYA_GATEWAY_MESH_TOKEN), sent as a bearer token",
            metavar="TOKEN",
            cli=False,  # a secret: never on a command line (ps shows it)
        ),
    ] = None
    is_end_actor: Annotated[
        bool,
        opt(
            "ASYA_IS_END_ACTOR",
            "serve an end queue with no runtime: report to the gateway, then ack",
            flag="--end",
        ),
    ] = False
    metrics_addr: Annotated[
        str,
        opt(
            "ASYA_METRICS_ADDR",
            "/metrics and /health address; :8080 = all interfaces; empty disables",
            metavar="HOST:PORT",
            empty_ok=True,
            check=_addr,
        ),
    ] = "127.0.0.1:8080"
    log_level: Annotated[
        str,
        opt(
            "ASYA_LOG_LEVEL",
            "DEBUG, INFO, WARNING or ERROR (tracebacks only at DEBUG)",
            metavar="LEVEL",
            check=one_of(*LOG_LEVELS, fold=True),
        ),
    ] = "INFO"
    log_format: Annotated[
        str | None,
        opt(
            "ASYA_LOG_FORMAT",
            "log lines as console or json",
            metavar="FORMAT",
            default_text="console on a TTY, else json",
            check=one_of("console", "json"),
        ),
    ] = None
    shutdown_grace: Annotated[
        float,
        opt(
            "ASYA_SHUTDOWN_GRACE",
            "after SIGTERM, time in-flight envelopes get before they are requeued",
            duration=True,
            gt=0,
        ),
    ] = 30.0
    cancel_grace: Annotated[
        float,
        opt(
            "ASYA_CANCEL_GRACE",
            "after a timeout's cancel, wait this long for end, else exit 3",
            duration=True,
            gt=0,
        ),
    ] = 5.0
    fly_buffer: Annotated[
        int,
        opt("ASYA_FLY_BUFFER", "gateway events buffered per envelope; overflow is dropped", ge=1),
    ] = 1024
    preflight_timeout: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_PREFLIGHT_TIMEOUT",
            "budget of the gateway pre-flight on the routing path",
            flag="--preflight-timeout",
            duration=True,
            ge=0,
        ),
    ] = 0.15
    status_linger: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_STATUS_LINGER",
            "how long progress statuses wait to share a POST (FLYs and ends never wait)",
            flag="--status-linger",
            duration=True,
            ge=0,
            le=1,
        ),
    ] = 0.005
    event_stream: Annotated[
        bool,
        opt(
            "ASYA_GATEWAY_EVENT_STREAM",
            "send event batches over one WebSocket per gateway where it has one (else POST)",
            flag="--event-stream",
        ),
    ] = True

    @property
    def namespace(self) -> str:
        return self.transport.namespace

    @property
    def socket_path(self) -> str:
        return f"{self.socket_dir.rstrip('/')}/{self.socket_name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **cli: Any) -> SidecarConfig:
        """Build from the environment; CLI values (by variable name or `Option.dest`;
        None = not given) win over their variables."""
        given = {_BY_ENV.get(k, k): v for k, v in cli.items() if v is not None}
        cfg = load(cls, env, given, required=["actor_name"])
        resiliency = _resiliency(cfg.resiliency_policies, cfg.resiliency_rules)
        transport = cfg.transport
        if transport.sqs_visibility_timeout == 0:  # upstream: 2 x actor timeout
            transport = msgspec.structs.replace(
                transport, sqs_visibility_timeout=2 * cfg.actor_timeout
            )
        if transport.rabbitmq_prefetch == 0:  # spec default: the sidecar's concurrency
            transport = msgspec.structs.replace(transport, rabbitmq_prefetch=cfg.concurrency)
        return msgspec.structs.replace(cfg, resiliency=resiliency, transport=transport)


_BY_ENV = {o.env: o.dest for o in options(SidecarConfig) if o.env}


def _resiliency(policies: str | None, rules: str | None) -> Resiliency | None:
    if policies is None and rules is None:
        return None  # upstream: no resiliency = a single attempt
    try:
        pol = parse_policies(policies) if policies else {}
    except ValueError as exc:
        raise ConfigError(f"ASYA_RESILIENCY_POLICIES: {exc}") from None
    try:
        rul = parse_rules(rules, pol) if rules else ()
    except ValueError as exc:
        raise ConfigError(f"ASYA_RESILIENCY_RULES: {exc}") from None
    return Resiliency(policies=pol, rules=rul)


def describe(cfg: SidecarConfig) -> dict[str, Any]:
    """The configuration as loggable data (for the startup log line)."""
    out: dict[str, Any] = json.loads(msgspec.json.encode(cfg))
    return out


__all__ = [
    "LOG_LEVELS",
    "SidecarConfig",
    "describe",
]
