"""The bytes one connection has still to write, and the backpressure they put on the handler.

Frames are encoded when the driver pushes them (one `FrameWriter` per connection) and appended
to one buffer; one flush is scheduled for when the invocation next yields to the loop, so
frames produced together leave in one `send` and a FLY followed by `await sleep()` leaves at
once. Overflow policy: the buffer is bounded by `HIGH_WATER`; above it the driver blocks in
`pace()` until the peer reads (backpressure reaches the handler).

Backend: asyncio (anyio's default): the scheduled flush is an asyncio loop callback. This
module knows nothing about frames' meaning or the connection's state.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Final

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.lowlevel import checkpoint

from .codec import FrameWriter
from .wire import Frame

__all__ = ["HIGH_WATER", "Outbox"]

_PACE_EVERY: Final = 32  # frames between two pace() calls of a handler that never awaits
HIGH_WATER: Final = 256 * 1024  # bytes buffered for one connection before pace() blocks
_HIGH_WATER = HIGH_WATER


class Outbox:
    """Encoded frames waiting for the socket.

    `push` appends and schedules one flush for when the current task next yields to the loop
    (`loop.call_soon` on asyncio: a callback, not a task switch), so frames produced together
    leave in one `send` and a FLY followed by `await sleep()` leaves at once. Whatever the
    socket won't take goes to the writer task, which waits for writability; while more than
    `_HIGH_WATER` bytes wait, `pace()` blocks the handler (backpressure).
    """

    __slots__ = (
        "_buf",
        "_busy",
        "_call_soon",
        "_count",
        "_drained",
        "_scheduled",
        "_sock",
        "_wake",
        "_writer",
        "broken",
        "on_broken",
    )

    def __init__(self, stream: SocketStream, writer: FrameWriter) -> None:
        self._writer = writer
        self._sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._buf = bytearray()
        self._wake = anyio.Event()
        # Created only when someone waits for it: a per-flush Event cost ~3 µs per envelope.
        self._drained: anyio.Event | None = None
        self._count = 0
        self._busy = False  # the writer task holds bytes not yet fully sent
        self._scheduled = False
        self._call_soon = asyncio.get_running_loop().call_soon
        self.broken = False
        self.on_broken: Callable[[], None] | None = None

    @property
    def sock(self) -> socket.socket:
        return self._sock

    def push(self, frame: Frame) -> bool:
        if self.broken:
            return False
        self._writer.append(frame, self._buf)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._scheduled_flush)
        self._count += 1
        return self._count >= _PACE_EVERY or len(self._buf) >= _HIGH_WATER

    def push_last(self, frame: Frame) -> None:
        """Append without scheduling a flush: the invocation is over and its owner calls
        `flush_now` before it next yields to the loop (a call_soon plus a no-op callback
        per envelope saved, ~1 µs)."""
        if not self.broken:
            self._writer.append(frame, self._buf)

    def congested(self) -> bool:
        return len(self._buf) >= _HIGH_WATER and not self.broken

    async def pace(self) -> None:
        self._count = 0
        while len(self._buf) >= _HIGH_WATER and not self.broken:
            await self._wait_drained()
        await checkpoint()

    async def _wait_drained(self) -> None:
        if self._drained is None:
            self._drained = anyio.Event()
        await self._drained.wait()

    def _set_drained(self) -> None:
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush_now()

    def flush_now(self) -> None:
        """Send what is buffered, without waiting; the rest goes to the writer task."""
        if self._busy or self.broken or not self._buf:
            return
        try:
            sent = self._sock.send(self._buf)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._mark_broken()
            return
        del self._buf[:sent]
        if self._buf:
            self._wake.set()
        else:
            self._set_drained()

    def _mark_broken(self) -> None:
        self.broken = True
        self._buf.clear()
        self._set_drained()
        if self.on_broken is not None:
            self.on_broken()

    async def run_writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            self._scheduled = False
            await self._write_all()

    async def _write_all(self) -> None:
        while self._buf and not self.broken:
            data, self._buf = self._buf, bytearray()
            view = memoryview(data)
            self._busy = True
            try:
                while view:
                    try:
                        view = view[self._sock.send(view) :]
                    except BlockingIOError:
                        await anyio.wait_writable(self._sock)
            except OSError:
                self._mark_broken()
            finally:
                self._busy = False
                view.release()
        self._set_drained()

    async def flush(self) -> None:
        """Write whatever is buffered (used at close, under a shielded timeout)."""
        while self._busy and not self.broken:
            await self._wait_drained()
        await self._write_all()
