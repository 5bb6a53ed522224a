"""One accepted connection's I/O shell: hello, then invocations run inline in its task, each
step as the state table (`connection.py`) decides."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Final

import anyio
import msgspec
from anyio.abc import SocketStream

from .abi import error_frame
from .codec import NEED_DATA, FrameWriter, runtime_reader
from .connection import ConnAction, Connection, ConnState
from .driver import drive
from .errors import RemoteProtocolError
from .loader import LoadedHandler
from .outbox import Outbox
from .slots import Slots
from .wire import (
    DEFAULT_MAX_FRAME_BYTES,
    MSG_PARSING_ERROR,
    Hello,
    Invoke,
    decode_envelope,
)

__all__ = ["Session", "Shared"]

log = logging.getLogger("asya_runtime")

_CLOSE_GRACE: Final = 1.0  # seconds to flush `end` when the connection is going away


@dataclass(frozen=True, slots=True, kw_only=True)
class Shared:
    """What every connection of one server shares."""

    handler: LoadedHandler
    hello: Hello  # the first frame of every connection
    slots: Slots  # the concurrency limit on invocations, across connections
    thread_limiter: anyio.CapacityLimiter  # sync handlers' worker threads
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES


class Session:
    """One accepted stream: hello, then invocations one at a time, run inline in this task.

    Every decision is the state table's (`connection.Connection`); this class only moves bytes
    and tasks. Reading is a loop reader callback (`_on_readable`, registered once for the
    connection's life, like an asyncio Protocol's `data_received`): it feeds the sans-IO
    reader and the table, and cancels the running invocation when the table says so. The
    connection task runs each queued invocation inline: no task spawn and no reader
    (un)registration per envelope.
    """

    def __init__(self, stream: SocketStream, shared: Shared) -> None:
        self.shared = shared
        self.stream = stream
        self.machine = Connection()
        self.outbox = Outbox(stream, FrameWriter(shared.max_frame_bytes))
        self.outbox.on_broken = self._write_failed
        self.sock = self.outbox.sock
        self.reader = runtime_reader(shared.max_frame_bytes)
        self.task: asyncio.Task[object] | None = None  # the connection task (set in run)
        self.running = False  # an invocation runs inside `_invoke`'s try block
        self.cancel_sent = False  # we asked the task to cancel that invocation
        self.reading = False  # our loop reader is registered
        self.waiter: asyncio.Future[None] | None = None  # the serve loop sleeps on it (I/O)

    def _cancel_invocation(self) -> None:
        """Cancel the running invocation. Called from loop callbacks and other tasks only, so
        the connection task is suspended at an await inside `_invoke`'s try block, where the
        CancelledError lands. A bare `task.cancel()`: an anyio CancelScope per invocation
        cost ~2-5 µs (create, enter, exit) on the hot path."""
        if self.running and not self.cancel_sent and self.task is not None:
            self.cancel_sent = True
            self.task.cancel()

    def _write_failed(self) -> None:
        if self.machine.write_failed():
            self._cancel_invocation()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self) -> None:
        """Until `_wake` (a bare future: an anyio.Event cost ~3 µs per envelope)."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def drain(self) -> None:
        """Shutdown began: run what was received to its `end`, then close (see `_quiesce`)."""
        self.machine.drain()
        self._wake()

    async def _quiesce(self) -> None:
        """Draining and idle: close unless the peer has sent an invoke (then it is run first).

        A sidecar checks that an idle connection is open just before it sends an invoke, so an
        invoke may be on its way whenever we close, and it must never be taken into our socket
        buffer and then dropped. Hence, with no await in between: read what was sent; shut the
        read side (from now on the peer's `send` fails with EPIPE: provably not delivered);
        read what arrived meanwhile (an invoke there is run, the write side is still open);
        only then shut the write side (the peer sees EOF on its idle connection).
        """
        await self.outbox.flush()  # the last `end` leaves before the shutdown
        machine = self.machine
        while self._on_readable():
            pass
        if machine.next_action() is not ConnAction.QUIESCE:
            return  # an invoke to run, or the peer left
        if self.reader.buffered:  # an invoke is partly here: wait for the rest (or EOF)
            await self._sleep()
            return
        machine.shut_read()
        self._stop_reading()  # EOF from now on
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
        while self._drain_buffered():
            pass

    def _drain_buffered(self) -> bool:
        """After our SHUT_RD: read what the kernel already holds (our own EOF ends it)."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, OSError):
            return False
        if data:
            self._receive_frames(data)
        return bool(data)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            asyncio.get_running_loop().remove_reader(self.sock.fileno())

    async def run(self) -> None:
        self.task = asyncio.current_task()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.outbox.run_writer)
                self.outbox.push(self.shared.hello)
                asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)
                self.reading = True
                try:
                    await self._serve_loop()
                finally:
                    self._stop_reading()
                    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                        await self.outbox.flush()
                    self.machine.close()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def _receive_frames(self, data: bytes) -> None:
        """Feed bytes; hand complete frames to the table; on a protocol error, fail."""
        reader = self.reader
        machine = self.machine
        reader.feed(data)
        try:
            while True:
                frame = reader.next_frame()
                if frame is NEED_DATA:
                    return
                if frame is None:
                    self._eof()
                    return
                if type(frame) is Invoke:
                    machine.invoke(frame.envelope)  # RemoteProtocolError while running
                elif machine.cancel():
                    self._cancel_invocation()
        except RemoteProtocolError as exc:
            log.warning("closing connection: %s", exc)
            cancel, frames = machine.failed(exc)
            for f in frames:
                self.outbox.push(f)
            if cancel:
                self._cancel_invocation()
            self._stop_reading()

    def _eof(self) -> None:
        if self.machine.eof():
            self._cancel_invocation()
        self._stop_reading()

    async def _serve_loop(self) -> None:
        machine = self.machine
        while True:
            action = machine.next_action()
            if action is ConnAction.RUN:
                raw, run = machine.start()
                await self._invoke(raw, run)  # type: ignore[arg-type]
            elif action is ConnAction.WAIT:
                await self._sleep()
            elif action is ConnAction.QUIESCE:
                await self._quiesce()
            else:
                if machine.state is ConnState.READ_SHUT:
                    # Nothing more can arrive (a partial frame's rest fails in the peer's `send`).
                    with contextlib.suppress(OSError):
                        self.sock.shutdown(socket.SHUT_WR)
                return

    def _on_readable(self) -> bool:
        """Loop reader callback: whatever arrives, at once (also while a handler runs).

        Returns whether bytes were read (more may be waiting), for `_quiesce`."""
        if not self.reading:
            return False
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        try:
            if data:
                self._receive_frames(data)
            else:  # disconnect: cancel the handler, then close
                self._eof()
        except Exception:  # a bug here must not leave the connection hanging
            log.exception("reading from the connection failed")
            self._eof()
        self._wake()
        return bool(data)

    async def _invoke(self, raw: msgspec.Raw, run: bool) -> None:
        outbox = self.outbox
        try:
            if run:
                await self._run_invocation(raw)
        finally:
            for f in self.machine.end():
                outbox.push_last(f)
            outbox.flush_now()  # no await since the push: the frames leave now

    async def _run_invocation(self, raw: msgspec.Raw) -> None:
        shared = self.shared
        task = self.task
        assert task is not None
        consumed = False
        self.running = True
        try:
            try:
                envelope = decode_envelope(raw)
            except ValueError as exc:  # msgspec errors, and UnicodeDecodeError
                self.outbox.push(error_frame(exc, code=MSG_PARSING_ERROR))
                return
            slots = shared.slots
            await slots.acquire()  # no checkpoint when a slot is free
            try:
                await drive(
                    shared.handler, envelope, self.outbox, thread_limiter=shared.thread_limiter
                )
            finally:
                slots.release()
        except asyncio.CancelledError:
            if not self.cancel_sent:
                raise  # not ours (shutdown grace over): propagate
            consumed = True
            if task.uncancel() > 0:
                raise  # ours, and someone else's too
        finally:
            if self.cancel_sent and not consumed:
                task.uncancel()  # the handler swallowed our cancel: forget the request
            self.running = False
            self.cancel_sent = False
