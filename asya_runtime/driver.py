"""Drive one invocation of any handler kind, pushing frames into a sink.

The only async code of the ABI: it awaits the handler (or a worker thread running it), calls
the pure `abi.Invocation.step` on each yielded value and pushes the resulting frames. It never
pushes `End`: the caller (server connection or `testing`) owns the invocation's framing.

Sinks: the server's per-connection outbox (frames encoded at push time, written by a writer
task) and `testing`'s list. `push` never blocks; it returns True when the driver should
`await sink.pace()` (batch boundary or buffer above its high-water mark), which is where
backpressure and fairness between connections happen.

Sync handlers run in a worker thread (`to_thread.run_sync(abandon_on_cancel=True)`); a sync
generator runs entirely in that thread, ABI step included, and hands each frame to the loop with
`from_thread.run_sync`, so its FLYs stream live. After cancellation its output is discarded.

This module knows nothing about sockets or framing bytes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import threading
from collections.abc import AsyncGenerator, Generator
from contextlib import aclosing
from typing import Any, Final, Protocol

import anyio
from anyio import from_thread, to_thread

from .abi import Invocation, error_frame
from .jsonable import to_jsonable
from .loader import HandlerKind, LoadedHandler
from .wire import Envelope, Fly, Frame

__all__ = ["Sink", "drive", "sync_calls_running"]

# Worker threads inside a sync handler right now (set.add/discard are atomic under the GIL).
# anyio keeps idle worker threads alive until the event loop's root task ends, so counting
# live threads at exit also counts idle ones: the CLI asks this instead (issue 14).
_in_handler: set[int] = set()


def sync_calls_running() -> int:
    """How many worker threads are running (or were abandoned inside) a sync handler."""
    return len(_in_handler)


def _call_sync(func: Any, payload: Any) -> Any:
    me = threading.get_ident()
    _in_handler.add(me)
    try:
        return func(payload)
    finally:
        _in_handler.discard(me)


class Sink(Protocol):
    def push(self, frame: Frame) -> bool:
        """Queue one frame; True means "call `pace()` now"."""
        ...

    def push_last(self, frame: Frame) -> None:
        """Queue the invocation's last frame: no handler code runs after it, and the caller
        writes the frames out before it next yields to the loop."""
        ...

    def congested(self) -> bool:
        """Above the high-water mark: `pace()` would wait (a sync generator's thread then
        blocks; otherwise it hands frames over without waiting)."""
        ...

    async def pace(self) -> None:
        """Let the frames out (and wait while the buffer is full)."""
        ...


_ASYNC_FUNCTION: Final = HandlerKind.ASYNC_FUNCTION
_BATCH: Final = 256  # frames a sync generator's thread may queue before it waits for the loop
# Return values that are certainly not a generator or coroutine to drive.
_PLAIN: Final = frozenset({dict, list, str, int, float, bool, type(None), tuple})


class _Flag:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


class _Discarded(Exception):
    """The invocation was cancelled while a worker thread still ran the handler."""


async def drive(
    handler: LoadedHandler,
    envelope: Envelope,
    sink: Sink,
    *,
    thread_limiter: anyio.CapacityLimiter | None = None,
) -> None:
    """Run `handler` on `envelope.payload`; fly/emit/error frames go to `sink`.

    Handler exceptions and ABI misuse become one `error` frame; cancellation propagates.
    """
    inv = Invocation(envelope)
    flag = _Flag()
    try:
        if handler.kind is _ASYNC_FUNCTION:  # the common case, without the dispatch below
            result = await handler.func(envelope.payload)
            if type(result) in _PLAIN:
                frame = inv.result(result)
                if frame is not None:
                    sink.push_last(frame)
            else:
                await _finish(result, inv, sink, thread_limiter, flag)
            return
        await _run(handler.func, handler.kind, envelope.payload, inv, sink, thread_limiter, flag)
    except Exception as exc:
        sink.push(error_frame(exc))
    except BaseException:
        flag.cancelled = True
        raise


async def _run(
    func: Any,
    kind: HandlerKind,
    payload: Any,
    inv: Invocation,
    sink: Sink,
    limiter: anyio.CapacityLimiter | None,
    flag: _Flag,
) -> None:
    if kind is HandlerKind.ASYNC_GENERATOR:
        await _drive_agen(func(payload), inv, sink)
    elif kind is HandlerKind.ASYNC_FUNCTION:
        await _finish(await func(payload), inv, sink, limiter, flag)
    elif kind is HandlerKind.GENERATOR:
        await _run_gen_in_thread(func, payload, inv, sink, flag, limiter)
    else:
        result = await to_thread.run_sync(
            _call_sync, func, payload, abandon_on_cancel=True, limiter=limiter
        )
        await _finish(result, inv, sink, limiter, flag)


async def _finish(
    result: Any,
    inv: Invocation,
    sink: Sink,
    limiter: anyio.CapacityLimiter | None,
    flag: _Flag,
) -> None:
    """A function's result; a returned generator or coroutine (a wrapped handler) is driven."""
    if inspect.isasyncgen(result):
        await _drive_agen(result, inv, sink)
    elif inspect.isgenerator(result):
        await _run_gen_in_thread(lambda _p: result, None, inv, sink, flag, limiter)
    elif inspect.iscoroutine(result):
        await _finish(await result, inv, sink, limiter, flag)
    else:
        frame = inv.result(result)
        if frame is not None:
            sink.push(frame)


async def _drive_agen(agen: AsyncGenerator[Any, Any], inv: Invocation, sink: Sink) -> None:
    step = inv.step
    push = sink.push
    async with aclosing(agen):
        asend = agen.asend
        reply: Any = None
        while True:
            try:
                value = await asend(reply)
            except StopAsyncIteration:
                return
            # Hot path (token streaming): ("FLY", dict) without the general dispatch.
            if (
                type(value) is tuple
                and len(value) == 2
                and value[0] == "FLY"
                and (type(value[1]) is dict)
            ):
                reply = None
                if push(Fly(data=to_jsonable(value[1]))):
                    await sink.pace()
                continue
            frame, reply = step(value)
            if frame is not None and push(frame):
                await sink.pace()


async def _run_gen_in_thread(
    func: Any,
    payload: Any,
    inv: Invocation,
    sink: Sink,
    flag: _Flag,
    limiter: anyio.CapacityLimiter | None,
) -> None:
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # another backend (trio): one blocking hand-off per frame
        loop = None
    out = _Handoff(sink, flag, loop)
    await to_thread.run_sync(
        _drive_gen_in_thread, func, payload, inv, out, flag, abandon_on_cancel=True, limiter=limiter
    )
    out.drain()  # what the thread queued after the last scheduled drain, before our `end`


class _Handoff:
    """A sync generator's frames, from its worker thread to the loop, in batches.

    The thread appends to a deque and schedules one drain on the loop when none is pending
    (`call_soon_threadsafe`: it does not wait), so frames still leave as soon as the loop runs
    (a FLY followed by `time.sleep(1)` arrives at once) and many FLYs share one wake-up
    instead of one blocking round trip each. Order is the deque's. Backpressure: when
    `_BATCH` frames wait, or the sink was congested at the last drain, the thread blocks in
    one round trip that pushes everything and awaits `pace()`. After cancellation the
    queued frames are discarded and the thread stops at its next frame.
    """

    __slots__ = ("_congested", "_failed", "_flag", "_loop", "_pending", "_q", "_sink")

    def __init__(self, sink: Sink, flag: _Flag, loop: asyncio.AbstractEventLoop | None) -> None:
        self._sink = sink
        self._flag = flag
        self._loop = loop
        self._q: collections.deque[Frame] = collections.deque()
        self._pending = False  # a drain is scheduled on the loop
        self._congested = False
        self._failed = False

    # -- worker thread --------------------------------------------------------------------

    def put(self, frame: Frame, *, final: bool = False) -> None:
        if self._flag.cancelled or self._failed:
            raise _Discarded
        if self._loop is None:
            _hand_over(self._sink, frame, self._flag, final=final)
            return
        q = self._q
        q.append(frame)  # append, then check `_pending` (the loop resets it, then drains)
        if not self._pending:
            self._pending = True
            try:
                self._loop.call_soon_threadsafe(self.drain)
            except RuntimeError as exc:  # the loop is closed (shutdown)
                raise _Discarded from exc
        if not final and (len(q) >= _BATCH or self._congested):
            try:
                from_thread.run(self._drain_and_pace)
            except RuntimeError as exc:
                raise _Discarded from exc

    # -- event loop -----------------------------------------------------------------------

    def drain(self) -> None:
        self._pending = False
        q = self._q
        if self._flag.cancelled:
            q.clear()
            return
        push = self._sink.push
        try:
            while q:
                push(q.popleft())
        except Exception as exc:  # e.g. a frame over the size limit: the invocation fails
            q.clear()
            self._failed = True  # the thread stops at its next frame
            push(error_frame(exc))
        self._congested = self._sink.congested()

    async def _drain_and_pace(self) -> None:
        self.drain()
        if self._flag.cancelled or self._failed:
            raise _Discarded
        await self._sink.pace()
        self._congested = self._sink.congested()


def _drive_gen_in_thread(
    func: Any, payload: Any, inv: Invocation, out: _Handoff, flag: _Flag
) -> None:
    """Worker thread: run a sync generator to the end, ABI step included."""
    me = threading.get_ident()
    _in_handler.add(me)
    try:
        _drive_gen(func, payload, inv, out, flag)
    finally:
        _in_handler.discard(me)


def _drive_gen(func: Any, payload: Any, inv: Invocation, out: _Handoff, flag: _Flag) -> None:
    gen: Generator[Any, Any, Any] = func(payload)
    try:
        reply: Any = None
        while not flag.cancelled:
            try:
                value = gen.send(reply)
            except StopIteration:
                return
            frame, reply = inv.step(value)
            if frame is not None:
                out.put(frame)
    except _Discarded:
        return
    except Exception as exc:
        if not flag.cancelled:
            with contextlib.suppress(_Discarded):
                out.put(error_frame(exc), final=True)
    finally:
        gen.close()


def _hand_over(sink: Sink, frame: Frame, flag: _Flag, *, final: bool = False) -> None:
    if flag.cancelled:
        raise _Discarded
    try:
        if from_thread.run_sync(_push_unless, sink, frame, flag) and not final:
            from_thread.run(sink.pace)
    except RuntimeError as exc:  # the loop is gone (shutdown)
        raise _Discarded from exc


def _push_unless(sink: Sink, frame: Frame, flag: _Flag) -> bool:
    if flag.cancelled:
        raise _Discarded
    return sink.push(frame)
