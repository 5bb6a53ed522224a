"""The gateway's configuration Struct, each option declared once (variable, default, help).

`asya_runtime.settings` derives `asya-gateway run`'s options, its `--help` and the docs from
these declarations; `cli.py` builds it from env + options, tests build it directly.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from asya_mesh.transports import TransportConfig
from asya_runtime.settings import one_of, opt

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_levels = one_of(*LOG_LEVELS, fold=True)


def _log_level(raw: str) -> str:
    """uvicorn's name for a level; accepts the sidecar's spellings (WARN, INFO, ...)."""
    return str(_levels("warning" if raw.lower() == "warn" else raw))


def _port(raw: object) -> int:
    port = int(str(raw))
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (0..65535)")
    return port


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the gateway app needs; nothing below cli.py reads the environment."""

    host: Annotated[str, opt("ASYA_GATEWAY_HOST", "interface to listen on", metavar="HOST")] = (
        "127.0.0.1"
    )
    port: Annotated[int, opt("ASYA_GATEWAY_PORT", "TCP port to listen on", ge=0, le=65535)] = 8089
    public_url: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_PUBLIC_URL",
            "base URL sidecars use to reach this gateway (stamped into x-asya-gateway-url)",
            metavar="URL",
            default_text="http://HOST:PORT",
        ),
    ] = None
    transport: TransportConfig = TransportConfig()
    keepalive_seconds: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_KEEPALIVE",
            "interval of keepalive comments on idle client streams",
            flag="--keepalive",
            duration=True,
            gt=0,
        ),
    ] = 15.0
    send_timeout_seconds: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_SEND_TIMEOUT",
            "a client not reading for this long is dropped",
            flag="--send-timeout",
            duration=True,
            gt=0,
        ),
    ] = 30.0
    ring_size: Annotated[
        int, opt("ASYA_GATEWAY_RING_SIZE", "events kept per task for Last-Event-ID replay", ge=1)
    ] = 1000
    ring_max_bytes: Annotated[
        int,
        opt(
            "ASYA_GATEWAY_RING_MAX_BYTES",
            "...and at most this many bytes of them",
            default_text="1 MiB",
            ge=1,
        ),
    ] = 1024 * 1024
    subscriber_buffer: Annotated[
        int,
        opt(
            "ASYA_GATEWAY_SUBSCRIBER_BUFFER",
            "events queued per client before its oldest are dropped",
            ge=1,
        ),
    ] = 1024
    max_tasks: Annotated[
        int,
        opt(
            "ASYA_GATEWAY_MAX_TASKS",
            "tasks kept in memory; the oldest finished are evicted first",
            ge=1,
        ),
    ] = 2000
    max_body_bytes: Annotated[
        int,
        opt(
            "ASYA_GATEWAY_MAX_BODY_BYTES",
            "larger request bodies get 413",
            default_text="10 MiB",
            ge=1,
        ),
    ] = 10 * 1024 * 1024
    database_url: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_DATABASE_URL",
            "the task store: sqlite:///PATH or postgresql://... (replicas share one PostgreSQL)",
            metavar="URL",
            default_text="sqlite beside the embedded queue (asya-gateway.db)",
        ),
    ] = None
    flows_file: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_FLOWS",
            "a JSON (or .toml) file of flows: named routes exposed over REST, A2A and MCP",
            flag="--flows",
            metavar="FILE",
        ),
    ] = None
    fly_hold_seconds: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_FLY_HOLD",
            "an out-of-order FLY waits at most this long for the ones before it",
            flag="--fly-hold",
            duration=True,
            ge=0,
        ),
    ] = 1.0
    terminal_wait_seconds: Annotated[
        float,
        opt(
            "ASYA_GATEWAY_TERMINAL_WAIT",
            "a terminal status waits for the FLYs it counts until none has come for this long"
            " (30 s at most)",
            flag="--terminal-wait",
            duration=True,
            ge=0,
        ),
    ] = 1.0
    api_keys: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_API_KEYS",
            "client keys: name:key,... or @FILE (one per line); clients send one as bearer or"
            " X-API-Key",
            metavar="KEYS",
            cli=False,  # a secret: never on a command line (ps shows it)
        ),
    ] = None
    jwt_key: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_JWT_KEY",
            "accept JWTs (bearer; sub and exp required) signed with this key: a PEM public key"
            " (RS256/ES256), @FILE or hs256:SECRET",
            metavar="KEY",
            cli=False,  # a secret: never on a command line (ps shows it)
        ),
    ] = None
    jwt_audience: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_JWT_AUDIENCE",
            "a JWT's aud must name this; unset: aud is not checked",
            metavar="AUD",
        ),
    ] = None
    jwt_issuer: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_JWT_ISSUER",
            "a JWT's iss must be this; unset: iss is not checked",
            metavar="ISS",
        ),
    ] = None
    mesh_token: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_MESH_TOKEN",
            "the sidecars' token (their ASYA_GATEWAY_TOKEN): required on the event, pause and"
            " feed endpoints; TOKEN,TOKEN,... accepts any one (rotation)",
            metavar="TOKEN",
            cli=False,  # a secret: never on a command line (ps shows it)
        ),
    ] = None
    mesh_port: Annotated[
        int | None,
        opt(
            "ASYA_GATEWAY_MESH_PORT",
            "serve the sidecar endpoints on this port too (only there; mesh token only)",
            metavar="PORT",
            check=_port,
        ),
    ] = None
    mesh_public_url: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_MESH_PUBLIC_URL",
            "base URL sidecars use to reach the mesh port (stamped into x-asya-gateway-url)",
            metavar="URL",
            default_text="http://HOST:MESH_PORT",
        ),
    ] = None
    log_level: Annotated[
        str,
        opt(
            "ASYA_LOG_LEVEL",
            "uvicorn's log level: debug, info, warning or error (tracebacks only at debug)",
            metavar="LEVEL",
            check=_log_level,
        ),
    ] = "warning"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def mesh_url(self) -> str:
        """Where sidecars reach this gateway: the mesh listener when there is one."""
        if self.mesh_port is None:
            return self.base_url
        if self.mesh_public_url:
            return self.mesh_public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.mesh_port}"

    def __repr__(self) -> str:  # never show a secret
        return f"GatewayConfig(host={self.host!r}, port={self.port}, mesh_port={self.mesh_port})"


__all__ = ["GatewayConfig"]
