"""The sidecar's end of the runtime socket: wait for readiness, connect, invoke, stream frames.

One `RuntimeConnection` carries one invocation at a time (abi-wire.md). Frames are decoded
inline by the task that invoked (no reader task, no extra hop per frame); between invocations
`alive()` peeks at the socket without blocking, so a runtime that went away while the
connection was idle is noticed before an envelope is handed to it. Knows nothing about queues,
routing or the gateway.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, cast

import anyio
import anyio.abc
import msgspec

from asya_runtime.codec import NEED_DATA, FrameReader, FrameWriter, sidecar_reader
from asya_runtime.errors import RemoteProtocolError
from asya_runtime.wire import (
    PROTOCOL_VERSION,
    READY_FILE,
    Cancel,
    End,
    Envelope,
    Hello,
    Invoke,
    RuntimeFrame,
)

_HELLO_TIMEOUT: Final = 10.0
_RECV_BYTES: Final = 65536
_BROKEN: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class RuntimeUnavailable(Exception):
    """The runtime could not be reached (not ready, restarting, wrong protocol)."""


class ProtocolMismatch(RuntimeUnavailable):
    """The runtime speaks another protocol version: waiting will not help."""


class InvokeNotDelivered(Exception):
    """The `invoke` could not be written: the runtime had already closed (e.g. it is shutting
    down). Nothing started, so the envelope goes back to its queue untouched."""


class RuntimeLost(Exception):
    """The connection broke, or the runtime sent a malformed frame, mid-invocation."""


class RuntimeConnection:
    """One connection to the runtime. `connect()` builds it and reads the `hello`."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream
        self._reader: FrameReader[RuntimeFrame] = sidecar_reader()
        self._writer = FrameWriter()
        self._encoder = msgspec.msgpack.Encoder()
        self._sock: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self.closed = False
        self.hello: Hello | None = None

    def alive(self) -> bool:
        """False if the runtime closed the idle connection (or sent something unasked)."""
        if self.closed:
            return False
        try:
            self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing to read: the connection is open and idle
        except OSError:
            pass
        # EOF, an error, or bytes nobody asked for (outside an invocation): start afresh.
        self.closed = True
        return False

    def _parse(self) -> object:
        """The reader's next frame, `NEED_DATA` or None (EOF); `RuntimeLost` if malformed."""
        try:
            return self._reader.next_frame()
        except RemoteProtocolError as exc:
            self.closed = True
            raise RuntimeLost(f"runtime sent a malformed frame: {exc}") from exc

    async def _next(self) -> RuntimeFrame:
        """The next frame; raises `RuntimeLost` at EOF or on a malformed frame."""
        while True:
            frame = self._parse()
            if frame is None:
                self.closed = True
                raise RuntimeLost("runtime closed the connection mid-invocation")
            if frame is not NEED_DATA:
                return cast(RuntimeFrame, frame)
            try:
                data = await self._stream.receive(_RECV_BYTES)
            except anyio.EndOfStream:
                data = b""
            except _BROKEN as exc:
                self.closed = True
                raise RuntimeLost(f"runtime connection lost: {exc!r}") from exc
            self._reader.feed(data)

    async def start(self, envelope: Envelope) -> None:
        """Send `invoke`; then read its frames with `next_frame()` up to `end`.

        Raises `InvokeNotDelivered` if the runtime had already closed.
        """
        raw = msgspec.Raw(self._encoder.encode(envelope))
        try:
            await self._stream.send(self._writer.encode(Invoke(envelope=raw)))
        except _BROKEN as exc:
            # A failed write means the runtime never read the invoke: it is not "lost
            # mid-invocation" (x-sump) but "not reachable when it would start" (requeue).
            self.closed = True
            raise InvokeNotDelivered(f"runtime closed before the invoke: {exc!r}") from exc

    def buffered_frame(self) -> RuntimeFrame | None:
        """The next frame if it is already read, else None (then `next_frame` waits for it);
        raises `RuntimeLost` on a malformed frame."""
        frame = self._parse()
        if frame is None or frame is NEED_DATA:
            return None  # EOF is `next_frame`'s to report
        return cast(RuntimeFrame, frame)

    async def next_frame(self) -> RuntimeFrame:
        """The invocation's next frame; raises `RuntimeLost` at EOF or on a malformed frame."""
        return await self._next()

    async def invoke(self, envelope: Envelope) -> AsyncIterator[RuntimeFrame]:
        """`start`, then yield frames up to and including `end` (raises `RuntimeLost` if the
        connection ends or breaks first)."""
        await self.start(envelope)
        while True:
            frame = await self._next()
            yield frame
            if isinstance(frame, End):
                return

    async def cancel(self) -> None:
        """Ask the runtime to stop the invocation in progress (it still answers `end`)."""
        try:
            await self._stream.send(self._writer.encode(Cancel()))
        except _BROKEN:
            self.closed = True

    async def drain_to_end(self) -> None:
        """Discard frames until `end` (after a cancel). Raises `RuntimeLost` on EOF."""
        while not isinstance(await self._next(), End):
            pass


@asynccontextmanager
async def connect(socket_path: str) -> AsyncIterator[RuntimeConnection]:
    """Connect, read and check `hello`; raises `RuntimeUnavailable` if that fails."""
    try:
        stream = await anyio.connect_unix(socket_path)
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot connect to {socket_path}: {exc}") from exc
    async with stream:
        conn = RuntimeConnection(stream)
        try:
            with anyio.fail_after(_HELLO_TIMEOUT):
                first = await conn._next()
        except (RuntimeLost, TimeoutError) as exc:
            raise RuntimeUnavailable(f"no hello from the runtime: {exc}") from exc
        if not isinstance(first, Hello):
            raise RuntimeUnavailable(f"expected hello, got {first!r}")
        if first.protocol != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"runtime speaks protocol {first.protocol} ({first.runtime}); "
                f"this sidecar speaks {PROTOCOL_VERSION}"
            )
        conn.hello = first
        yield conn


async def wait_ready(socket_path: str, within: float) -> None:
    """Wait until `runtime-ready` exists beside the socket and the socket accepts + says hello.

    Backs off from 5 ms to 250 ms between tries (no fixed 500 ms poll); raises
    `RuntimeUnavailable` after `within` seconds.
    """
    ready_file = os.path.join(os.path.dirname(socket_path) or ".", READY_FILE)
    delay = 0.005
    last: Exception | None = None
    with anyio.move_on_after(within if math.isfinite(within) else 3600.0):
        while True:
            if await anyio.Path(ready_file).exists():
                try:
                    async with connect(socket_path):
                        return
                except ProtocolMismatch:
                    raise
                except RuntimeUnavailable as exc:
                    last = exc
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
    raise RuntimeUnavailable(f"runtime at {socket_path} not ready after {within:g}s: {last}")


__all__ = [
    "InvokeNotDelivered",
    "ProtocolMismatch",
    "RuntimeConnection",
    "RuntimeLost",
    "RuntimeUnavailable",
    "connect",
    "wait_ready",
]
