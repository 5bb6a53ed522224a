"""The A2A SSE response: one task's events for one client, with a keepalive every second or so.

Written here rather than taken from the SDK (sse-starlette pings every 15 s; the SDK's client
gives up after 5 s of silence). One task group runs the producer (it folds the task's updates
and `emit`s encoded events into a bounded outbox), the writer (one socket write per wake-up:
whatever piled up meanwhile goes out together, as the native SSE stream does), the keepalive
and the disconnect listener; whichever ends first ends the stream. A full outbox makes the
producer wait (backpressure), so a slow client costs memory only up to the bound. The writer is
the only task that sends (the keepalive queues its comment in the outbox), so a send needs no
lock and a wake-up of the writer writes at once, without yielding first.
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


class _Outbox:
    """Encoded events waiting for the writer; bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.done = False
        self._ready = anyio.Event()
        self._room = anyio.Event()

    async def put(self, chunk: bytes) -> None:
        while self.size >= self.max_bytes:
            self._room = anyio.Event()
            await self._room.wait()
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._ready.set()

    def ping(self, chunk: bytes) -> None:
        """Queue a tiny chunk (a keepalive) past the bound: it must never wait."""
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._ready.set()

    def close(self) -> None:
        self.done = True
        self._ready.set()

    async def take(self) -> bytes | None:
        """Everything queued, as one chunk; None once closed and empty."""
        while not self.chunks:
            if self.done:
                return None
            self._ready = anyio.Event()
            await self._ready.wait()
        out = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        self._room.set()
        return out


class A2AStream:
    """ASGI response running `producer` with keepalives until it returns or the client leaves."""

    def __init__(
        self,
        producer: Producer,
        *,
        keepalive: float,
        send_timeout: float,
        max_buffer_bytes: int = 1 << 20,
    ) -> None:
        self.producer = producer
        self.keepalive = keepalive
        self.send_timeout = send_timeout
        self.max_buffer_bytes = max_buffer_bytes

    async def _send(self, send: Send, body: bytes, more: bool = True) -> None:
        # a client that stops reading blocks `send`: give up on it rather than hold the task
        with anyio.fail_after(self.send_timeout):
            await send({"type": "http.response.body", "body": body, "more_body": more})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outbox = _Outbox(self.max_buffer_bytes)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            async with anyio.create_task_group() as tg:

                async def produce() -> None:
                    try:
                        await self.producer(outbox.put)
                    finally:
                        outbox.close()

                async def write() -> None:
                    while (chunk := await outbox.take()) is not None:
                        await self._send(send, chunk)
                    tg.cancel_scope.cancel()  # all written: the stream is over

                async def keepalive() -> None:
                    while True:
                        await anyio.sleep(self.keepalive)
                        outbox.ping(KEEPALIVE)

                async def disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                async def guard(fn: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await fn()
                    except (TimeoutError, OSError):
                        tg.cancel_scope.cancel()  # the client stalled or went away

                for fn in (produce, write, keepalive, disconnect):
                    tg.start_soon(guard, fn)
            with anyio.move_on_after(self.send_timeout, shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            pass  # nothing left to tell a client that is gone


__all__ = ["HEADERS", "KEEPALIVE", "A2AStream", "Producer", "sse_data"]
