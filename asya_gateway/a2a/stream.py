"""The A2A SSE response: one task's events for one client, with a keepalive every second or so.

Written here rather than taken from the SDK (sse-starlette pings every 15 s; the SDK's client
gives up after 5 s of silence). The events come from an async callable run in the request's
own task (the watch it iterates was entered there); the keepalive and the disconnect listener
run beside it in one task group, and whichever ends first ends the stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio
from starlette.types import Receive, Scope, Send

KEEPALIVE: Final = b": keepalive\n\n"
HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]

#: Produces the stream: calls `emit(chunk)` for each encoded SSE chunk, returns when done.
Producer = Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]


def sse_data(payload: bytes) -> bytes:
    """One SSE event whose data is `payload` (compact JSON has no newlines)."""
    return b"data: " + payload + b"\n\n"


class A2AStream:
    """ASGI response running `producer` with keepalives until it returns or the client leaves."""

    def __init__(
        self,
        producer: Producer,
        *,
        keepalive: float,
        send_timeout: float,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.producer = producer
        self.keepalive = keepalive
        self.send_timeout = send_timeout
        self.on_close = on_close
        self._lock = anyio.Lock()

    async def _send(self, send: Send, body: bytes, more: bool = True) -> None:
        # a client that stops reading blocks `send`: give up on it rather than hold the task
        with anyio.fail_after(self.send_timeout):
            async with self._lock:
                await send({"type": "http.response.body", "body": body, "more_body": more})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            async with anyio.create_task_group() as tg:

                async def keepalive() -> None:
                    while True:
                        await anyio.sleep(self.keepalive)
                        await self._send(send, KEEPALIVE)

                async def disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass

                async def guard(fn: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await fn()
                    except (TimeoutError, OSError):
                        pass  # the client stalled or went away
                    finally:
                        tg.cancel_scope.cancel()

                tg.start_soon(guard, keepalive)
                tg.start_soon(guard, disconnect)
                try:
                    await self.producer(lambda chunk: self._send(send, chunk))
                except (TimeoutError, OSError):
                    pass
                finally:
                    tg.cancel_scope.cancel()
            with anyio.move_on_after(self.send_timeout, shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            pass  # nothing left to tell a client that is gone
        finally:
            if self.on_close is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_close()


__all__ = ["HEADERS", "KEEPALIVE", "A2AStream", "Producer", "sse_data"]
