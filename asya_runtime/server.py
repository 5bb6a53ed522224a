"""The I/O shell: an anyio Unix listener serving asya-abi/1, one task per connection.

Task tree (every task has an owner):

    serve()                      binds, writes runtime-ready, task_status.started(path)
     └── _Connection.run()       one per accepted stream; closes it in `finally`
          ├── _Outbox.run_writer  writes every batch of ready frames in one send
          └── _Connection._invoke one at a time; holds a slot of the concurrency limiter

The reader loop runs in `_Connection.run` itself. Frames are encoded when the driver pushes
them (one FrameWriter per connection) and appended to the outbox buffer; the writer task wakes
as soon as the invocation task yields to the loop, so frames produced together leave together
and a FLY followed by `await sleep()` leaves immediately. Overflow policy: the buffer is bounded
by `_HIGH_WATER`; above it the driver blocks in `pace()` until the peer reads (backpressure
reaches the handler).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from . import __version__
from .abi import error_frame
from .codec import NEED_DATA, FrameWriter, runtime_reader
from .connection import ConnectionState, ConnState
from .driver import drive
from .errors import RemoteProtocolError
from .loader import LoadedHandler
from .wire import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Cancel,
    End,
    Error,
    Frame,
    Hello,
    Invoke,
    decode_envelope,
)

__all__ = ["DEFAULT_CONCURRENCY", "ServerConfig", "serve"]

log = logging.getLogger("asya_runtime")

DEFAULT_CONCURRENCY: Final = 16
_PACE_EVERY: Final = 32  # frames between two pace() calls of a handler that never awaits
_HIGH_WATER: Final = 256 * 1024  # bytes buffered for one connection before pace() blocks
_CLOSE_GRACE: Final = 1.0  # seconds to flush `end` when the connection is going away
READY_FILE: Final = "runtime-ready"


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    socket_path: Path
    concurrency: int = DEFAULT_CONCURRENCY
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    socket_mode: int | None = 0o666


class _Outbox:
    """Encoded frames waiting for the socket, plus the task that writes them."""

    __slots__ = ("_buf", "_count", "_drained", "_sock", "_wake", "_writer", "broken", "on_broken")

    def __init__(self, stream: SocketStream, writer: FrameWriter) -> None:
        self._writer = writer
        self._sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._buf = bytearray()
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._count = 0
        self.broken = False
        self.on_broken: Any = None

    def push(self, frame: Frame) -> bool:
        if self.broken:
            return False
        self._writer.append(frame, self._buf)
        self._wake.set()
        self._count += 1
        return self._count >= _PACE_EVERY or len(self._buf) >= _HIGH_WATER

    async def pace(self) -> None:
        self._count = 0
        while len(self._buf) >= _HIGH_WATER and not self.broken:
            await self._drained.wait()
        await checkpoint()

    async def run_writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self._write_all()

    async def _write_all(self) -> None:
        while self._buf and not self.broken:
            data, self._buf = self._buf, bytearray()
            view = memoryview(data)
            try:
                while view:
                    try:
                        view = view[self._sock.send(view) :]
                    except BlockingIOError:
                        await anyio.wait_writable(self._sock)
            except OSError:
                self.broken = True
                if self.on_broken is not None:
                    self.on_broken()
            finally:
                view.release()
        self._buf.clear()
        self._drained.set()
        self._drained = anyio.Event()

    async def flush(self) -> None:
        """Write whatever is buffered (used at close, under a shielded timeout)."""
        await self._write_all()


class _Server:
    def __init__(self, handler: LoadedHandler, config: ServerConfig) -> None:
        self.handler = handler
        self.config = config
        self.limiter = anyio.CapacityLimiter(config.concurrency)
        self.thread_limiter = anyio.CapacityLimiter(config.concurrency)
        self.hello = Hello(
            protocol=PROTOCOL_VERSION,
            runtime=f"asya-runtime/{__version__}",
            handler=handler.spec,
            pid=os.getpid(),
        )


class _Connection:
    def __init__(self, server: _Server, stream: SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.state = ConnectionState()
        self.outbox = _Outbox(stream, FrameWriter(server.config.max_frame_bytes))
        self.outbox.on_broken = self._cancel_invocation
        self.scope: anyio.CancelScope | None = None
        self.idle = anyio.Event()
        self.idle.set()
        self.fatal: Error | None = None

    def _cancel_invocation(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.outbox.run_writer)
                self.outbox.push(self.server.hello)
                try:
                    await self._read_loop(tg)
                finally:
                    self._cancel_invocation()
                    with anyio.CancelScope(shield=True):
                        await self.idle.wait()
                        with anyio.move_on_after(_CLOSE_GRACE):
                            await self.outbox.flush()
                    self.state.close()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self, tg: TaskGroup) -> None:
        reader = runtime_reader(self.server.config.max_frame_bytes)
        receive = self.stream.receive
        while True:
            try:
                data = await receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the peer went away: run() cancels the invocation
            reader.feed(data)
            try:
                while True:
                    frame = reader.next_frame()
                    if frame is NEED_DATA:
                        break
                    if frame is None:
                        return
                    self._on_frame(frame, tg)  # type: ignore[arg-type]
            except RemoteProtocolError as exc:
                log.warning("closing connection: %s", exc)
                self._fatal(exc)
                return

    def _on_frame(self, frame: Invoke | Cancel, tg: TaskGroup) -> None:
        if isinstance(frame, Invoke):
            self.state.on("invoke")
            self.idle = anyio.Event()
            self.scope = anyio.CancelScope()
            tg.start_soon(self._invoke, frame.envelope, self.scope)
        elif self.state.on("cancel") is ConnState.CANCELLING:
            self._cancel_invocation()

    def _fatal(self, exc: RemoteProtocolError) -> None:
        frame = error_frame(exc)
        if self.state.state in (ConnState.RUNNING, ConnState.CANCELLING):
            self.fatal = frame  # the invocation ends with it, instead of a second `end`
            self._cancel_invocation()
        else:
            self.outbox.push(frame)
            self.outbox.push(End())

    async def _invoke(self, raw: msgspec.Raw, scope: anyio.CancelScope) -> None:
        server = self.server
        outbox = self.outbox
        try:
            with scope:
                try:
                    envelope = decode_envelope(raw)
                except msgspec.DecodeError as exc:
                    outbox.push(error_frame(exc))
                else:
                    async with server.limiter:
                        await drive(
                            server.handler, envelope, outbox, thread_limiter=server.thread_limiter
                        )
        finally:
            self.scope = None
            if self.fatal is not None:
                outbox.push(self.fatal)
            if self.state.state is not ConnState.CLOSED:
                self.state.on("end")
            outbox.push(End())
            self.idle.set()


def _prepare_socket_path(path: Path) -> None:
    """Create the directory; refuse a live socket or a non-socket file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    import stat

    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return  # stale: nobody listens; anyio replaces it
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use by another live process")


async def serve(
    handler: LoadedHandler,
    config: ServerConfig,
    *,
    task_status: TaskStatus[Path] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Bind, write runtime-ready, serve until cancelled; remove both files on the way out."""
    path = config.socket_path
    _prepare_socket_path(path)
    listener = await anyio.create_unix_listener(path, mode=config.socket_mode)
    ready = path.parent / READY_FILE
    server = _Server(handler, config)
    try:
        ready.write_text("ready")
        log.info(
            "serving %s (%s) on %s, concurrency %d",
            handler.spec, handler.kind.value, path, config.concurrency,
        )
        async with anyio.create_task_group() as tg:
            task_status.started(path)
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                        log.error("accept failed (%s); backing off", exc)
                        await anyio.sleep(0.1)
                        continue
                    raise
                tg.start_soon(_Connection(server, stream).run)  # type: ignore[arg-type]
    finally:
        for p in (path, ready):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        with anyio.CancelScope(shield=True):
            await listener.aclose()
