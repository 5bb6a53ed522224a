"""Prometheus metrics with upstream's names (`asya_actor_*`), plus FLY counters, and their server.

The server is a tiny HTTP/1.0 responder on an anyio listener serving `/metrics` and `/health`
(no web framework needed for two GET routes); it runs in the sidecar's top task group.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

NAMESPACE: Final = "asya_actor"
_SIZE_BUCKETS: Final = tuple(100.0 * 10**k for k in range(8))


class Metrics:
    """All sidecar metrics, in one registry (so tests and several sidecars never collide)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.registry = r = CollectorRegistry()
        ns = NAMESPACE
        self.received = Counter(
            "messages_received",
            "Messages received",
            ["queue", "transport"],
            namespace=ns,
            registry=r,
        )
        self.processed = Counter(
            "messages_processed",
            "Messages processed",
            ["queue", "status"],
            namespace=ns,
            registry=r,
        )
        self.sent = Counter(
            "messages_sent",
            "Messages sent",
            ["destination_queue", "message_type"],
            namespace=ns,
            registry=r,
        )
        self.failed = Counter(
            "messages_failed", "Messages failed", ["queue", "reason"], namespace=ns, registry=r
        )
        self.processing = Histogram(
            "processing_duration_seconds",
            "Envelope processing time",
            ["queue"],
            namespace=ns,
            registry=r,
        )
        self.runtime = Histogram(
            "runtime_execution_duration_seconds",
            "Runtime call time",
            ["queue"],
            namespace=ns,
            registry=r,
        )
        self.receive_time = Histogram(
            "queue_receive_duration_seconds",
            "Queue receive time",
            ["queue", "transport"],
            namespace=ns,
            registry=r,
        )
        self.send_time = Histogram(
            "queue_send_duration_seconds",
            "Queue send time",
            ["destination_queue", "transport"],
            namespace=ns,
            registry=r,
        )
        self.size = Histogram(
            "envelope_size_bytes",
            "Envelope size",
            ["direction"],
            buckets=_SIZE_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.active = Gauge("active_messages", "Envelopes in flight", namespace=ns, registry=r)
        self.feed_connected = Gauge(
            "gateway_feed_connected",
            "Gateway task feeds connected (a cancel at the gateway reaches running handlers)",
            namespace=ns,
            registry=r,
        )
        self.runtime_errors = Counter(
            "runtime_errors", "Runtime errors", ["queue", "error_type"], namespace=ns, registry=r
        )
        self.fly_forwarded = Counter(
            "fly_forwarded", "FLY events delivered to the gateway", namespace=ns, registry=r
        )
        self.fly_batched = Counter(
            "fly_batched", "FLY events delivered inside a batch POST", namespace=ns, registry=r
        )
        self.fly_dropped = Counter(
            "fly_dropped",
            "FLY events dropped (buffer full or gateway unreachable)",
            namespace=ns,
            registry=r,
        )
        self.gateway_streamed = Counter(
            "gateway_streamed",
            "event batches the gateway answered on its event stream (the rest went by POST)",
            namespace=ns,
            registry=r,
        )
        self.fly_coalesced = Counter(
            "fly_coalesced",
            "FLY events merged into the one before them (buffer full, gateway healthy but slow)",
            namespace=ns,
            registry=r,
        )
        self.healthy = True
        self.unhealthy_reason = ""
        # Readiness: the runtime socket the workers wait for (None: no runtime, e.g. --end),
        # and how many of them hold a connection to it right now.
        self.runtime_path: str | None = None
        self.connected = 0
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: the hot path skips prometheus_client's lock."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def set_unhealthy(self, reason: str) -> None:
        self.healthy = False
        self.unhealthy_reason = reason

    def health(self) -> tuple[bool, str]:
        """(ok, text) for `/health`: unhealthy, not ready (waiting for the runtime), or ok."""
        if not self.healthy:
            return (
                False,
                f"unhealthy: {self.unhealthy_reason}" if self.unhealthy_reason else "unhealthy",
            )
        if self.runtime_path is not None and self.connected == 0:
            return False, f"not ready: waiting for the runtime at {self.runtime_path}"
        return True, "ok"

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _response(status: str, ctype: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _serve_one(metrics: Metrics, stream: anyio.abc.SocketStream) -> None:
    async with stream:
        buf = b""
        with anyio.move_on_after(5):
            while b"\r\n\r\n" not in buf and len(buf) < 8192:
                try:
                    buf += await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
        parts = buf.split(b" ", 2)
        path = parts[1].decode("latin-1").split("?")[0] if len(parts) > 1 else ""
        if path == "/metrics":
            out = _response("200 OK", CONTENT_TYPE_LATEST, metrics.render())
        elif path in ("/health", "/healthz"):
            ok, text = metrics.health()
            out = _response(
                "200 OK" if ok else "503 Service Unavailable", "text/plain", text.encode()
            )
        else:
            out = _response("404 Not Found", "text/plain", b"not found")
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await stream.send(out)


async def serve_metrics(
    metrics: Metrics,
    addr: str,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `/metrics` and `/health` on `host:port` (empty host = all interfaces)."""
    host, _, port = addr.rpartition(":")
    listener = await anyio.create_tcp_listener(
        local_host=host or None, local_port=int(port), reuse_port=False
    )
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    task_status.started(bound)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        await _serve_one(metrics, stream)

    await listener.serve(handle)


__all__ = [
    "NAMESPACE",
    "Metrics",
    "serve_metrics",
]
