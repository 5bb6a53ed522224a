"""The I/O shell: an anyio Unix listener serving asya-abi/1, one task per connection.

Task tree (every task has an owner):

    serve()                      binds, writes runtime-ready, task_status.started(path);
     │                           on `stop`: unpublishes, drains (see `serve`), returns
     ├── _accept_loop()          accepts until `stop` (then cancelled)
     └── _Connection.run()       one per accepted stream: reads frames and runs each invocation
          │                      inline (holding a slot of the concurrency limiter); closes the
          │                      stream in `finally`
          └── _Outbox.run_writer  writes what the socket would not take at once

Frames are encoded when the driver pushes them (one FrameWriter per connection) and appended
to the outbox buffer; one flush is scheduled for when the invocation next yields to the loop,
so frames produced together leave in one `send` and a FLY followed by `await sleep()` leaves at
once. Overflow policy: the buffer is bounded by `_HIGH_WATER`; above it the driver blocks in
`pace()` until the peer reads (backpressure reaches the handler).

Backend: asyncio (anyio's default). The flush callback and the watch on the socket while an
invocation runs are asyncio loop callbacks; everything else is anyio.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus
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
    MSG_PARSING_ERROR,
    PROTOCOL_VERSION,
    READY_FILE,
    Cancel,
    End,
    Error,
    Frame,
    Hello,
    Invoke,
    decode_envelope,
)

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_SHUTDOWN_GRACE", "ServerConfig", "serve"]

log = logging.getLogger("asya_runtime")

DEFAULT_CONCURRENCY: Final = 16
# Under Kubernetes' default terminationGracePeriodSeconds (30 s), leaving time to clean up.
DEFAULT_SHUTDOWN_GRACE: Final = 25.0
_PACE_EVERY: Final = 32  # frames between two pace() calls of a handler that never awaits
_HIGH_WATER: Final = 256 * 1024  # bytes buffered for one connection before pace() blocks
_CLOSE_GRACE: Final = 1.0  # seconds to flush `end` when the connection is going away


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    socket_path: Path
    concurrency: int = DEFAULT_CONCURRENCY
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    socket_mode: int | None = 0o666
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE  # seconds in-flight invocations get on `stop`


class _Outbox:
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
        self._drained = anyio.Event()
        self._count = 0
        self._busy = False  # the writer task holds bytes not yet fully sent
        self._scheduled = False
        self._call_soon = asyncio.get_running_loop().call_soon
        self.broken = False
        self.on_broken: Any = None

    def push(self, frame: Frame) -> bool:
        if self.broken:
            return False
        self._writer.append(frame, self._buf)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._scheduled_flush)
        self._count += 1
        return self._count >= _PACE_EVERY or len(self._buf) >= _HIGH_WATER

    async def pace(self) -> None:
        self._count = 0
        while len(self._buf) >= _HIGH_WATER and not self.broken:
            await self._drained.wait()
        await checkpoint()

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
            self._drained.set()
            self._drained = anyio.Event()

    def _mark_broken(self) -> None:
        self.broken = True
        self._buf.clear()
        self._drained.set()
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
        self._drained.set()
        self._drained = anyio.Event()

    async def flush(self) -> None:
        """Write whatever is buffered (used at close, under a shielded timeout)."""
        while self._busy and not self.broken:
            await self._drained.wait()
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
        self.connections: set[_Connection] = set()
        self.draining = False
        self.all_closed = anyio.Event()  # set once draining and no connection is left

    def drain(self) -> None:
        """Shutdown began: every connection finishes what it has received, then closes."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        self._check_all_closed()

    def closed(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        self._check_all_closed()

    def _check_all_closed(self) -> None:
        if self.draining and not self.connections:
            self.all_closed.set()


class _Connection:
    """One accepted stream: hello, then invocations one at a time, run inline in this task.

    Reading is a loop reader callback (`_on_readable`, registered once for the connection's
    life, like an asyncio Protocol's `data_received`): it feeds the sans-IO reader, queues an
    `invoke`, and cancels the running invocation on `cancel`, a disconnect or a bad frame. The
    connection task runs each queued invocation inline: no task spawn and no reader
    (un)registration per envelope.
    """

    def __init__(self, server: _Server, stream: SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.state = ConnectionState()
        self.outbox = _Outbox(stream, FrameWriter(server.config.max_frame_bytes))
        self.outbox.on_broken = self._cancel_invocation
        self.sock = self.outbox._sock
        self.reader = runtime_reader(server.config.max_frame_bytes)
        self.scope: anyio.CancelScope | None = None
        self.fatal: Error | None = None
        self.closing = False  # EOF or a fatal protocol error: stop after the invocation
        self.draining = False  # shutdown: finish what was received, then close
        self.read_shut = False  # draining: we shut our read side (see `_close_if_quiet`)
        # Bounded: the state table allows one invoke per invocation (a second is fatal).
        self.pending: list[msgspec.Raw] = []
        self.waiter: anyio.Event | None = None

    def _cancel_invocation(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def drain(self) -> None:
        """Shutdown began: run what was received to its `end`, then close (see `_close_if_quiet`).
        A connection idle now closes now."""
        self.draining = True
        if self.waiter is not None:
            self.waiter.set()

    async def _close_if_quiet(self) -> bool:
        """Draining and idle: close unless the peer has sent an invoke (False: run it first).

        A sidecar checks that an idle connection is open just before it sends an invoke, so an
        invoke may be on its way whenever we close, and it must never be taken into our socket
        buffer and then dropped. Hence, with no await in between: read what was sent; shut the
        read side (from now on the peer's `send` fails with EPIPE: provably not delivered);
        read what arrived meanwhile (an invoke there is run, the write side is still open);
        only then shut the write side (the peer sees EOF on its idle connection).
        """
        await self.outbox.flush()  # the last `end` leaves before the shutdown
        while self._on_readable():
            pass
        if self.pending:
            return False
        if self.closing:
            return True
        if self.reader.buffered and not self.read_shut:  # an invoke is partly here: wait
            self.waiter = anyio.Event()
            await self.waiter.wait()
            return False
        if not self.read_shut:
            self.read_shut = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())  # EOF from now on
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RD)
            while self._on_readable():
                pass
            if self.pending:
                return False
        # Nothing more can arrive (a partial frame's rest would fail in the peer's `send`).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        return True

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.outbox.run_writer)
                self.outbox.push(self.server.hello)
                loop = asyncio.get_running_loop()
                fd = self.sock.fileno()
                loop.add_reader(fd, self._on_readable)
                try:
                    await self._serve_loop()
                finally:
                    loop.remove_reader(fd)
                    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                        await self.outbox.flush()
                    self.state.close()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def _receive_frames(self, data: bytes) -> None:
        """Feed bytes; queue complete frames; on a protocol error, fail the connection."""
        self.reader.feed(data)
        try:
            while True:
                frame = self.reader.next_frame()
                if frame is NEED_DATA:
                    return
                if frame is None:
                    self.closing = True
                    return
                self._on_frame(frame)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            log.warning("closing connection: %s", exc)
            self._fatal(exc)

    def _on_frame(self, frame: Invoke | Cancel) -> None:
        if isinstance(frame, Invoke):
            self.state.on("invoke")  # RemoteProtocolError while running
            self.pending.append(frame.envelope)
        elif self.state.on("cancel") is ConnState.CANCELLING:
            self._cancel_invocation()

    def _fatal(self, exc: RemoteProtocolError) -> None:
        self.closing = True
        frame = error_frame(exc)
        if self.state.state in (ConnState.RUNNING, ConnState.CANCELLING) and self.scope:
            self.fatal = frame  # the invocation ends with it, instead of a second `end`
            self._cancel_invocation()
        else:
            self.pending.clear()
            self.outbox.push(frame)
            self.outbox.push(End())

    async def _serve_loop(self) -> None:
        while True:
            if self.pending:
                raw = self.pending.pop(0)
                self.scope = scope = anyio.CancelScope()
                if self.closing or self.state.state is ConnState.CANCELLING:
                    scope.cancel()  # the cancel (or EOF) arrived in the same read as the invoke
                await self._invoke(raw, scope)
            elif self.closing:
                return
            elif self.draining:
                if await self._close_if_quiet():
                    return
                # else an invoke (or part of one) arrived: loop to run it
            else:
                self.waiter = anyio.Event()
                await self.waiter.wait()

    def _on_readable(self) -> bool:
        """Loop reader callback: whatever arrives, at once (also while a handler runs).

        Returns whether bytes were read (more may be waiting), for `_close_if_quiet`."""
        if self.closing:
            return False
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data and self.read_shut:
            return False  # our own shutdown's EOF, not the peer leaving
        try:
            if data:
                self._receive_frames(data)
            else:  # disconnect: cancel the handler, then close
                self.closing = True
                self._cancel_invocation()
        except Exception:  # a bug here must not leave the connection hanging
            log.exception("reading from the connection failed")
            self.closing = True
            self._cancel_invocation()
        if self.closing:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        if (self.pending or self.closing) and self.waiter is not None:
            self.waiter.set()
        return bool(data)

    async def _invoke(self, raw: msgspec.Raw, scope: anyio.CancelScope) -> None:
        server = self.server
        outbox = self.outbox
        try:
            with scope:
                try:
                    envelope = decode_envelope(raw)
                except ValueError as exc:  # msgspec errors, and UnicodeDecodeError
                    outbox.push(error_frame(exc, code=MSG_PARSING_ERROR))
                else:
                    limiter = server.limiter
                    try:  # no checkpoint when a slot is free (CapacityLimiter.acquire has one)
                        limiter.acquire_nowait()
                    except anyio.WouldBlock:
                        await limiter.acquire()
                    try:
                        await drive(
                            server.handler, envelope, outbox, thread_limiter=server.thread_limiter
                        )
                    finally:
                        limiter.release()
        finally:
            self.scope = None
            if self.fatal is not None:
                outbox.push(self.fatal)
                self.fatal = None
            if self.state.state is not ConnState.CLOSED:
                self.state.on("end")
            outbox.push(End())
            outbox.flush_now()


async def _serve_connection(server: _Server, stream: SocketStream) -> None:
    """One connection; a bug in it closes that connection, never the whole server."""
    conn = _Connection(server, stream)
    server.connections.add(conn)
    try:
        if server.draining:
            conn.draining = True  # accepted in the instant before the listener closed
        await conn.run()
    except Exception:
        log.exception("connection failed; closed")
    finally:
        server.closed(conn)


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


async def _accept_loop(listener: SocketListener, server: _Server, conns: TaskGroup) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                log.error("accept failed (%s); backing off", exc)
                await anyio.sleep(0.1)
                continue
            raise
        conns.start_soon(_serve_connection, server, stream)


async def serve(
    handler: LoadedHandler,
    config: ServerConfig,
    *,
    stop: anyio.Event | None = None,
    task_status: TaskStatus[Path] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Bind, write runtime-ready, serve until `stop` is set (or until cancelled).

    On `stop` (graceful): stop accepting, remove the socket and runtime-ready at once (a
    sidecar now sees the runtime as not ready), close idle connections, let invocations
    already received finish (each connection closes after its last `end`), and after
    `config.shutdown_grace` seconds cancel what still runs (handlers' `finally` blocks run,
    each gets its `end`). Cancelling `serve` cancels everything at once. Both files are
    removed on every way out.
    """
    path = config.socket_path
    _prepare_socket_path(path)
    listener = await anyio.create_unix_listener(path, mode=config.socket_mode)
    ready = path.parent / READY_FILE
    server = _Server(handler, config)
    published = True
    try:
        ready.write_text("ready")
        log.info(
            "serving %s (%s) on %s, concurrency %d",
            handler.spec,
            handler.kind.value,
            path,
            config.concurrency,
        )
        async with anyio.create_task_group() as conns:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(_accept_loop, listener, server, conns)
                task_status.started(path)
                await (anyio.sleep_forever() if stop is None else stop.wait())
                accepting.cancel_scope.cancel()
            # At once, and only here: a runtime started during the grace may bind this path.
            _unpublish(path, ready)
            published = False
            await listener.aclose()
            busy = sum(1 for c in server.connections if c.pending or c.scope is not None)
            log.info(
                "shutting down: %d invocation(s) in flight, up to %gs to finish",
                busy,
                config.shutdown_grace,
            )
            server.drain()
            with anyio.move_on_after(config.shutdown_grace):
                await server.all_closed.wait()
            if server.connections:
                log.warning(
                    "shutdown grace (%gs) over: cancelling %d invocation(s)",
                    config.shutdown_grace,
                    sum(1 for c in server.connections if c.scope is not None),
                )
            conns.cancel_scope.cancel()
    finally:
        if published:
            _unpublish(path, ready)
        with anyio.CancelScope(shield=True):
            await listener.aclose()


def _unpublish(path: Path, ready: Path) -> None:
    for p in (path, ready):
        p.unlink(missing_ok=True)
