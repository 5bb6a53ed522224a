"""The gateway's configuration Struct (built in `cli.py` from env + options; tests build it)."""

from __future__ import annotations

import msgspec

from asya_mesh.transports import TransportConfig


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the gateway app needs; nothing below cli.py reads the environment."""

    host: str = "127.0.0.1"
    port: int = 8089
    public_url: str | None = None  # stamped into x-asya-gateway-url; default http://host:port
    transport: TransportConfig = TransportConfig()
    keepalive_seconds: float = 15.0  # `: keepalive` comment interval on idle streams
    send_timeout_seconds: float = 30.0  # a client not reading for this long is dropped
    ring_size: int = 1000  # events kept per task for Last-Event-ID replay
    ring_max_bytes: int = 1024 * 1024  # ...and at most this many bytes of them
    subscriber_buffer: int = 1024  # events queued per client before its oldest are dropped
    max_tasks: int = 2000  # tasks kept in memory; the oldest finished are evicted first
    max_body_bytes: int = 10 * 1024 * 1024  # larger request bodies get 413
    # A sidecar-reported succeeded/failed is published this much later, so FLYs still in
    # flight from the actor's sidecar reach clients before it (see TaskRegistry).
    terminal_linger_seconds: float = 0.25

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


__all__ = ["GatewayConfig"]
