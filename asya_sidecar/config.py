"""The sidecar's configuration: one frozen Struct built once from `ASYA_*` variables + CLI options.

Only `cli.py` calls `from_env` with `os.environ`; everything below takes a `SidecarConfig`.
Every bad value raises `ValueError` naming the variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from asya_mesh.transports import TransportConfig
from asya_runtime.durations import parse_duration

from .resiliency import Resiliency, parse_policies, parse_rules

_TRUE: Final = {"true", "1", "yes", "on"}
_FALSE: Final = {"false", "0", "no", "off", ""}


class SidecarConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything `asya-sidecar run` needs. Durations are seconds."""

    actor_name: str
    transport: TransportConfig = TransportConfig()
    socket_dir: str = "/var/run/asya"
    socket_name: str = "asya-runtime.sock"
    runtime_ready_timeout: float = 300.0
    concurrency: int = 1
    actor_timeout: float = 300.0
    resiliency: Resiliency | None = None
    sink: str = "x-sink"
    sump: str = "x-sump"
    gateway_url: str | None = None
    is_end_actor: bool = False
    metrics_addr: str = "127.0.0.1:8080"  # "" disables
    log_level: str = "INFO"
    log_format: str | None = None  # console | json; None = console on a TTY else json
    shutdown_grace: float = 30.0
    cancel_grace: float = 5.0
    fly_buffer: int = 1024
    preflight_timeout: float = 0.15  # the pre-flight's budget on the routing path
    fly_flush_timeout: float = 0.1  # an envelope's FLYs get this long to reach the gateway
    # before its outputs are sent (0 = do not wait)

    @property
    def namespace(self) -> str:
        return self.transport.namespace

    @property
    def socket_path(self) -> str:
        return f"{self.socket_dir.rstrip('/')}/{self.socket_name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **cli: Any) -> SidecarConfig:
        """Build from the environment; CLI options (non-None) win over their variables."""
        vals: dict[str, str] = {k: v for k, v in env.items() if k.startswith("ASYA_")}
        for var, value in cli.items():
            if value is not None:
                vals[var] = str(value).lower() if isinstance(value, bool) else str(value)

        def get(var: str) -> str | None:
            v = vals.get(var)
            return v if v not in (None, "") else None

        raw: dict[str, Any] = {}
        actor = get("ASYA_ACTOR_NAME")
        if not actor:
            raise ValueError("ASYA_ACTOR_NAME is required (the actor this sidecar serves)")
        raw["actor_name"] = actor
        for var, field in (
            ("ASYA_SOCKET_DIR", "socket_dir"),
            ("ASYA_SOCKET_NAME", "socket_name"),
            ("ASYA_ACTOR_SINK", "sink"),
            ("ASYA_ACTOR_SUMP", "sump"),
            ("ASYA_GATEWAY_URL", "gateway_url"),
            ("ASYA_LOG_LEVEL", "log_level"),
            ("ASYA_LOG_FORMAT", "log_format"),
        ):
            if (v := get(var)) is not None:
                raw[field] = v
        for var, field in (
            ("ASYA_RUNTIME_READY_TIMEOUT", "runtime_ready_timeout"),
            ("ASYA_RESILIENCY_ACTOR_TIMEOUT", "actor_timeout"),
            ("ASYA_SHUTDOWN_GRACE", "shutdown_grace"),
            ("ASYA_CANCEL_GRACE", "cancel_grace"),
        ):
            if (v := get(var)) is not None:
                try:
                    raw[field] = parse_duration(v)
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from None
                if raw[field] <= 0:
                    raise ValueError(f"{var}: must be positive, got {v!r}")
        for var, field in (
            ("ASYA_GATEWAY_PREFLIGHT_TIMEOUT", "preflight_timeout"),
            ("ASYA_FLY_FLUSH_TIMEOUT", "fly_flush_timeout"),
        ):
            if (v := get(var)) is not None:
                try:
                    raw[field] = parse_duration(v)
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from None
                if raw[field] < 0:
                    raise ValueError(f"{var}: must not be negative, got {v!r}")
        for var, field, low in (
            ("ASYA_CONCURRENCY", "concurrency", 1),
            ("ASYA_FLY_BUFFER", "fly_buffer", 1),
        ):
            if (v := get(var)) is not None:
                try:
                    raw[field] = int(v)
                except ValueError:
                    raise ValueError(f"{var}: expected an integer, got {v!r}") from None
                if raw[field] < low:
                    raise ValueError(f"{var}: must be >= {low}, got {v!r}")
        if (v := get("ASYA_IS_END_ACTOR")) is not None:
            if v.lower() not in _TRUE | _FALSE:
                raise ValueError(f"ASYA_IS_END_ACTOR: expected true/false, got {v!r}")
            raw["is_end_actor"] = v.lower() in _TRUE
        if "ASYA_METRICS_ADDR" in vals:  # present but empty = disabled
            raw["metrics_addr"] = vals["ASYA_METRICS_ADDR"]
            if raw["metrics_addr"]:
                _check_addr(raw["metrics_addr"])
        fmt = raw.get("log_format")
        if fmt is not None and fmt not in ("console", "json"):
            raise ValueError(f"ASYA_LOG_FORMAT: expected console or json, got {fmt!r}")
        if raw.get("log_level", "INFO").upper() not in (
            "DEBUG",
            "INFO",
            "WARN",
            "WARNING",
            "ERROR",
            "CRITICAL",
        ):
            raise ValueError(f"ASYA_LOG_LEVEL: unknown level {raw['log_level']!r}")
        raw["resiliency"] = _resiliency(
            get("ASYA_RESILIENCY_POLICIES"), get("ASYA_RESILIENCY_RULES")
        )
        if (url := raw.get("gateway_url")) and not url.startswith(("http://", "https://")):
            raise ValueError(f"ASYA_GATEWAY_URL: expected an http(s) URL, got {url!r}")
        tvars = {k: v for k, v in vals.items() if v is not None}
        transport = TransportConfig.from_env(tvars)
        if transport.sqs_visibility_timeout == 0:  # upstream: 2 x actor timeout
            transport = msgspec.structs.replace(
                transport, sqs_visibility_timeout=2 * raw.get("actor_timeout", 300.0)
            )
        if transport.rabbitmq_prefetch == 0:  # spec default: the sidecar's concurrency
            transport = msgspec.structs.replace(
                transport, rabbitmq_prefetch=raw.get("concurrency", 1)
            )
        raw["transport"] = transport
        return cls(**raw)


def _check_addr(addr: str) -> None:
    _host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"ASYA_METRICS_ADDR: expected host:port or :port, got {addr!r}")


def _resiliency(policies: str | None, rules: str | None) -> Resiliency | None:
    if policies is None and rules is None:
        return None  # upstream: no resiliency = a single attempt
    try:
        pol = parse_policies(policies) if policies else {}
    except ValueError as exc:
        raise ValueError(f"ASYA_RESILIENCY_POLICIES: {exc}") from None
    try:
        rul = parse_rules(rules, pol) if rules else ()
    except ValueError as exc:
        raise ValueError(f"ASYA_RESILIENCY_RULES: {exc}") from None
    return Resiliency(policies=pol, rules=rul)


def describe(cfg: SidecarConfig) -> dict[str, Any]:
    """The configuration as loggable data (for the startup log line)."""
    out: dict[str, Any] = json.loads(msgspec.json.encode(cfg))
    return out
