"""Test your handler with nothing running: public helpers for handler authors.

    from asya_runtime.testing import actor, collect_all, run_handler, run_handler_sync

- `collect_all(gen)`: everything a generator yields, as a list (for an async generator,
  `await collect_all(agen)`). No ABI: verbs come back as the tuples they are.
- `actor(handler)` / `@actor`: call the handler the way the runtime would, minus the wire. FLY
  tuples are filtered out (kept in `.flies`), GET/SET/DEL run against `.context` (the envelope
  metadata: id, parent_id, route, headers, status), and the call returns the list of emitted
  payloads (`[]` for a `None` return). Async handlers give an async wrapper.
- `run_handler(handler, payload, ...)`: runs the handler through the real ABI driver, exactly
  as the server does, and returns the frames that would go on the wire (round-tripped through
  the codec), ending with `End`. `run_handler_sync` is the same outside an event loop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import anyio
import msgspec

from .abi import Invocation
from .codec import FrameWriter, sidecar_reader
from .driver import drive
from .loader import LoadedHandler, kind_of, load_handler
from .wire import Emit, End, Envelope, Error, Fly, Frame, RuntimeFrame

__all__ = [
    "actor",
    "collect_all",
    "emits",
    "errors",
    "flies",
    "make_envelope",
    "run_handler",
    "run_handler_sync",
]


def collect_all(gen: Any) -> Any:
    """All values a generator yields, as a list; for an async generator, an awaitable of it."""
    if inspect.isasyncgen(gen):

        async def _collect() -> list[Any]:
            return [v async for v in gen]

        return _collect()
    return list(gen)


def make_envelope(
    payload: Any,
    *,
    route: list[str] | None = None,
    headers: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    id: str | None = None,
    parent_id: str | None = None,
) -> Envelope:
    """An envelope whose route is `route` (first = current actor; default `["test"]`)."""
    actors = route or ["test"]
    return msgspec.convert(
        {
            "id": id,
            "parent_id": parent_id,
            "route": {"prev": [], "curr": actors[0], "next": list(actors[1:])},
            "headers": dict(headers or {}),
            "status": dict(status or {}),
            "payload": payload,
        },
        Envelope,
    )


class _Actor:
    """What `actor()` returns: a callable with `.context` and `.flies`."""

    def __init__(self, handler: Callable[..., Any], envelope: Envelope) -> None:
        self._handler = handler
        self._inv = Invocation(envelope)
        self.flies: list[dict[str, Any]] = []

    @property
    def context(self) -> dict[str, Any]:
        return self._inv.meta

    def _apply(self, value: Any, out: list[Any]) -> Any:
        frame, reply = self._inv.step(value)
        if isinstance(frame, Fly):
            self.flies.append(frame.data)
        elif isinstance(frame, Emit):
            out.append(frame.payload)
        return reply

    def _drive_sync(self, result: Any) -> list[Any]:  # result: Any, so send() accepts values
        out: list[Any] = []
        if inspect.isgenerator(result):
            gen: Generator[Any, Any, Any] = result
            reply = None
            try:
                while True:
                    reply = self._apply(gen.send(reply), out)
            except StopIteration:
                pass
            finally:
                gen.close()
        elif result is not None:
            out.append(self._inv.emit(result).payload)
        return out

    async def _drive_async(self, result: Any) -> list[Any]:
        if inspect.iscoroutine(result):
            result = await result
        if not inspect.isasyncgen(result):
            return self._drive_sync(result)
        agen: AsyncGenerator[Any, Any] = result
        out: list[Any] = []
        reply = None
        try:
            while True:
                reply = self._apply(await agen.asend(reply), out)
        except StopAsyncIteration:
            pass
        finally:
            await agen.aclose()
        return out


def actor(
    handler: Callable[..., Any] | None = None,
    *,
    route: list[str] | None = None,
    headers: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
) -> Any:
    """Wrap (or decorate) a handler so a test can call it and get its emitted payloads."""

    def wrap(fn: Callable[..., Any]) -> Any:
        a = _Actor(fn, make_envelope(None, route=route, headers=headers, status=status))
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):

            async def call_async(payload: Any) -> list[Any]:
                return await a._drive_async(fn(payload))

            wrapper: Any = functools.wraps(fn)(call_async)
        else:

            def call_sync(payload: Any) -> list[Any]:
                return a._drive_sync(fn(payload))

            wrapper = functools.wraps(fn)(call_sync)
        wrapper.context = a.context
        wrapper.flies = a.flies
        return wrapper

    return wrap if handler is None else wrap(handler)


class _ListSink:
    """The driver's sink for tests: frames go through the real codec into a list."""

    def __init__(self) -> None:
        self.frames: list[RuntimeFrame] = []
        self._writer = FrameWriter()
        self._reader = sidecar_reader()

    def push(self, frame: Frame) -> bool:
        self._reader.feed(self._writer.encode(frame))
        self.frames.append(self._reader.next_frame())  # type: ignore[arg-type]
        return False

    def push_last(self, frame: Frame) -> None:
        self.push(frame)

    def congested(self) -> bool:
        return False

    async def pace(self) -> None:
        return None


def _loaded(handler: Callable[..., Any] | LoadedHandler | str) -> LoadedHandler:
    if isinstance(handler, LoadedHandler):
        return handler
    if isinstance(handler, str):
        return load_handler(handler)
    name = getattr(handler, "__qualname__", repr(handler))
    return LoadedHandler(spec=name, func=handler, kind=kind_of(handler))


async def run_handler(
    handler: Callable[..., Any] | LoadedHandler | str,
    payload: Any = None,
    *,
    envelope: Envelope | None = None,
    route: list[str] | None = None,
    headers: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
) -> list[RuntimeFrame]:
    """The frames (fly/emit/error, then End) the runtime would send for this invocation."""
    env = envelope or make_envelope(payload, route=route, headers=headers, status=status)
    sink = _ListSink()
    await drive(_loaded(handler), env, sink)
    sink.push(End())
    return sink.frames


def run_handler_sync(
    handler: Callable[..., Any] | LoadedHandler | str, payload: Any = None, **kwargs: Any
) -> list[RuntimeFrame]:
    """`run_handler` from synchronous code (starts its own event loop)."""
    return anyio.run(functools.partial(run_handler, handler, payload, **kwargs))


def flies(frames: list[RuntimeFrame]) -> list[dict[str, Any]]:
    """The data of every `fly` frame."""
    return [f.data for f in frames if isinstance(f, Fly)]


def emits(frames: list[RuntimeFrame]) -> list[Emit]:
    """Every `emit` frame (payload, route, headers, status)."""
    return [f for f in frames if isinstance(f, Emit)]


def errors(frames: list[RuntimeFrame]) -> list[Error]:
    """Every `error` frame."""
    return [f for f in frames if isinstance(f, Error)]
