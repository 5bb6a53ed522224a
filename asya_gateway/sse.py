"""Server-Sent Events: the pure encoding, and `SseResponse`, one subscriber as `text/event-stream`.

`SseResponse` is shaped like sse-starlette's `EventSourceResponse`: one task group runs the
stream, the keepalive (sharing a send lock with the stream) and the disconnect listener;
whichever ends first cancels the others. Every send has a timeout, so a stalled client costs
only its own stream. Knows subscribers' encoded items, not tasks, routes or the store.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import anyio
from starlette.types import Receive, Scope, Send

#: FLY dicts whose single top-level key is one of these get that key as SSE event name.
A2A_EVENT_KEYS: Final = frozenset({"artifact_update", "status_update", "message"})
# A dict with one key has it first: the only FLYs that can be named by an A2A key start so.
_A2A_START: Final = re.compile(
    rb'\s*\{\s*"(?:%s)"' % b"|".join(re.escape(k.encode()) for k in sorted(A2A_EVENT_KEYS))
)


def fly_event_name(fly: dict[str, Any]) -> str:
    """SSE event name of a FLY: `partial`, or its one A2A top-level key."""
    if len(fly) == 1:
        (key,) = fly
        if key in A2A_EVENT_KEYS:
            return str(key)
    return "partial"


def might_be_a2a(raw: bytes) -> bool:
    """Cheap pre-check: only a FLY whose first key is an A2A key needs decoding for its name."""
    return _A2A_START.match(raw) is not None


def encode_sse(event: str | None, data: bytes, event_id: int | None = None) -> bytes:
    """One SSE event: `id:`, `event:`, one `data:` line per line of `data`, blank line."""
    parts: list[bytes] = []
    if event_id is not None:
        parts.append(b"id: %d\n" % event_id)
    if event:
        if "\n" in event or "\r" in event:
            raise ValueError("SSE event name must be a single line")
        parts.append(b"event: " + event.encode() + b"\n")
    if b"\n" not in data and b"\r" not in data:  # compact JSON, every FLY: one data line
        return b"".join(parts) + b"data: " + data + b"\n\n"
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def one_line_size(event: str, data: bytes, event_id: int) -> int | None:
    """`len(encode_sse(event, data, event_id))` without encoding, when `data` is one line
    (compact JSON, every FLY a sidecar sends) and `event` is named; else None."""
    if not event or not data or b"\n" in data or b"\r" in data:
        return None
    return len(b"id: %d\nevent: \ndata: \n\n" % event_id) + len(event.encode()) + len(data)


def encode_comment(text: str) -> bytes:
    """An SSE comment (ignored by clients; keeps proxies and idle timers happy)."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"


class SseSource(Protocol):
    """What `SseResponse` drains: encoded chunks, and whether more will come."""

    @property
    def finished(self) -> bool: ...

    def drain_sse(self) -> bytes:
        """Everything queued, encoded, as one chunk (b"" when nothing is queued)."""
        ...

    async def wait(self) -> None:
        """Return once something is queued or the source is finished."""
        ...


_KEEPALIVE: Final = encode_comment("keepalive")
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer the stream
]


class SseResponse:
    """ASGI response streaming `source` until it is finished or the client goes away."""

    def __init__(
        self,
        source: SseSource,
        *,
        keepalive: float,
        send_timeout: float,
        on_close: Callable[[], None],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.source = source
        self.keepalive = keepalive
        self.send_timeout = send_timeout
        self.on_close = on_close
        self.headers = _HEADERS + (headers or [])
        self._lock = anyio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.headers}
            await self._send(send, start)
            async with anyio.create_task_group() as tg:

                async def first_wins(fn: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await fn()
                    except (TimeoutError, OSError):
                        pass  # the client stalled or went away: end the whole stream
                    finally:
                        tg.cancel_scope.cancel()

                tg.start_soon(first_wins, lambda: self._stream(send))
                tg.start_soon(first_wins, lambda: self._keepalive(send))
                tg.start_soon(first_wins, lambda: self._listen_disconnect(receive))
            with anyio.move_on_after(self.send_timeout, shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            pass  # the client stalled or went away: nothing left to tell it
        finally:
            self.on_close()

    async def _send(self, send: Send, message: dict[str, object]) -> None:
        # A client that stops reading makes `send` block on flow control: give up after the
        # timeout (the caller treats it as a disconnect) instead of holding the task forever.
        with anyio.fail_after(self.send_timeout):
            async with self._lock:
                await send(message)

    async def _stream(self, send: Send) -> None:
        src = self.source
        while True:
            await src.wait()
            chunk = src.drain_sse()
            if chunk:
                await self._send(
                    send, {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            elif src.finished:
                return

    async def _keepalive(self, send: Send) -> None:
        while True:
            await anyio.sleep(self.keepalive)
            await self._send(
                send, {"type": "http.response.body", "body": _KEEPALIVE, "more_body": True}
            )

    @staticmethod
    async def _listen_disconnect(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return


__all__ = [
    "A2A_EVENT_KEYS",
    "SseResponse",
    "SseSource",
    "encode_comment",
    "encode_sse",
    "fly_event_name",
    "might_be_a2a",
    "one_line_size",
]
