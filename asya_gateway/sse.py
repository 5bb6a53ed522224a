"""The client stream response: one subscriber's events as `text/event-stream`, shaped like
sse-starlette's `EventSourceResponse`.

One task group runs three tasks: the stream, the keepalive (sharing a send lock with the stream)
and the disconnect listener; whichever ends first cancels the others. Every send has a timeout,
so a stalled client costs only its own stream. Knows subscribers, not tasks or HTTP routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio
from starlette.types import Receive, Scope, Send

from .events import encode_comment
from .tasks import Subscriber

_KEEPALIVE: Final = encode_comment("keepalive")
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer the stream
]


class EventStream:
    """ASGI response streaming `subscriber` until it is finished or the client goes away."""

    def __init__(
        self,
        subscriber: Subscriber,
        *,
        keepalive: float,
        send_timeout: float,
        on_close: Callable[[Subscriber], None],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.subscriber = subscriber
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
            self.on_close(self.subscriber)

    async def _send(self, send: Send, message: dict[str, object]) -> None:
        # A client that stops reading makes `send` block on flow control: give up after the
        # timeout (the caller treats it as a disconnect) instead of holding the task forever.
        with anyio.fail_after(self.send_timeout):
            async with self._lock:
                await send(message)

    async def _stream(self, send: Send) -> None:
        sub = self.subscriber
        while True:
            await sub.wait()
            if sub.queue:
                chunk = sub.drain()
                await self._send(
                    send, {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            elif sub.finished:
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


__all__ = ["EventStream"]
