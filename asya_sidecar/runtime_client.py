"""The sidecar's end of the runtime socket: wait for readiness, connect, invoke, stream frames.

One `RuntimeConnection` carries one invocation at a time (abi-wire.md). A reader task owned by
the connection decodes frames as they arrive into a small bounded stream, so an idle connection
notices at once when the runtime goes away (`closed`), and frames are never delayed by the
consumer beyond that buffer. Knows nothing about queues, routing or the gateway.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asya_runtime.codec import NEED_DATA, FrameWriter, sidecar_reader
from asya_runtime.errors import RemoteProtocolError
from asya_runtime.wire import (
    PROTOCOL_VERSION,
    Cancel,
    End,
    Envelope,
    Hello,
    Invoke,
    RuntimeFrame,
)

READY_FILE: Final = "runtime-ready"
_HELLO_TIMEOUT: Final = 10.0
# Frames decoded but not yet consumed. Full -> the reader stops reading the socket, which is
# backpressure onto the runtime (the spec's rule for frames: block, never drop).
_FRAME_BUFFER: Final = 64


class RuntimeUnavailable(Exception):
    """The runtime could not be reached (not ready, restarting, wrong protocol)."""


class RuntimeLost(Exception):
    """The connection broke, or the runtime sent a malformed frame, mid-invocation."""


class RuntimeConnection:
    """One connection to the runtime, after a valid `hello`."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        hello: Hello,
        frames: MemoryObjectReceiveStream[RuntimeFrame | BaseException],
    ) -> None:
        self.hello = hello
        self._stream = stream
        self._frames = frames
        self._writer = FrameWriter()
        self._encoder = msgspec.msgpack.Encoder()
        self.closed = False

    async def invoke(self, envelope: Envelope) -> AsyncIterator[RuntimeFrame]:
        """Send `invoke` and yield frames up to and including `end`.

        Raises `RuntimeLost` if the connection ends or breaks first.
        """
        raw = msgspec.Raw(self._encoder.encode(envelope))
        try:
            await self._stream.send(self._writer.encode(Invoke(envelope=raw)))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise RuntimeLost(f"runtime connection lost: {exc!r}") from exc
        while True:
            item = await self._next()
            yield item
            if isinstance(item, End):
                return

    async def _next(self) -> RuntimeFrame:
        try:
            item = await self._frames.receive()
        except anyio.EndOfStream:
            self.closed = True
            raise RuntimeLost("runtime closed the connection mid-invocation") from None
        if isinstance(item, BaseException):
            self.closed = True
            raise RuntimeLost(f"runtime connection lost: {item}") from item
        return item

    async def cancel(self) -> None:
        """Ask the runtime to stop the invocation in progress (it still answers `end`)."""
        try:
            await self._stream.send(self._writer.encode(Cancel()))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.closed = True

    async def drain_to_end(self) -> None:
        """Discard frames until `end` (after a cancel). Raises `RuntimeLost` on EOF."""
        while not isinstance(await self._next(), End):
            pass


async def _read_frames(
    stream: anyio.abc.ByteStream,
    send: MemoryObjectSendStream[RuntimeFrame | BaseException],
    conn_box: list[RuntimeConnection],
) -> None:
    reader = sidecar_reader()
    async with send:
        try:
            while True:
                frame = reader.next_frame()
                if frame is NEED_DATA:
                    try:
                        data = await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        data = b""
                    reader.feed(data)
                    continue
                if frame is None:
                    break
                assert not isinstance(frame, type(NEED_DATA))
                await send.send(frame)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            await send.send(exc)
        except anyio.ClosedResourceError:
            pass
        finally:
            if conn_box:
                conn_box[0].closed = True


@asynccontextmanager
async def connect(socket_path: str) -> AsyncIterator[RuntimeConnection]:
    """Connect, read and check `hello`; raises `RuntimeUnavailable` if that fails."""
    try:
        stream = await anyio.connect_unix(socket_path)
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot connect to {socket_path}: {exc}") from exc
    send, recv = anyio.create_memory_object_stream[RuntimeFrame | BaseException](_FRAME_BUFFER)
    box: list[RuntimeConnection] = []
    async with stream, recv, anyio.create_task_group() as tg:
        tg.start_soon(_read_frames, stream, send, box)
        try:
            with anyio.fail_after(_HELLO_TIMEOUT):
                first = await recv.receive()
        except (anyio.EndOfStream, TimeoutError) as exc:
            tg.cancel_scope.cancel()
            raise RuntimeUnavailable("runtime closed the connection before hello") from exc
        if not isinstance(first, Hello) or first.protocol != PROTOCOL_VERSION:
            tg.cancel_scope.cancel()
            raise RuntimeUnavailable(
                f"expected hello with protocol {PROTOCOL_VERSION}, got {first!r}"
            )
        conn = RuntimeConnection(stream, first, recv)
        box.append(conn)
        try:
            yield conn
        finally:
            tg.cancel_scope.cancel()


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
                except RuntimeUnavailable as exc:
                    last = exc
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
    raise RuntimeUnavailable(f"runtime at {socket_path} not ready after {within:g}s: {last}")
