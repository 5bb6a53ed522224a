"""The yield ABI as a pure step: one yielded value + invocation state → a frame and a reply.

`Invocation` holds what one handler call may read and write: the envelope metadata (`.id`,
`.parent_id`, `.route`, `.headers`, `.status`) and the input route every `emit` is shifted
from. `step(value)` applies the dispatch table of asya-abi/1:

    None                 → no frame, reply None
    ("FLY", object)      → Fly, reply None (a dict, or what converts to a JSON object)
    ("GET", path)        → no frame, reply a deep copy of the value (None if missing)
    ("SET", path, value) → no frame, reply None (access-checked, value deep-copied)
    ("DEL", path)        → no frame, reply None (access-checked)
    any other tuple      → AbiError("ABI protocol error: ...")
    anything else        → Emit, reply None

`result(value)` maps a plain function's return value (None → no frame). `error_frame(exc)`
builds the `error` frame for any exception; the code itself comes from `errors.error_code`.

This module knows nothing about sockets, tasks, threads or msgspec encoding.
"""

from __future__ import annotations

import traceback
from typing import Any, Final

from . import paths
from .errors import AbiError, error_code
from .jsonable import copy_json, to_jsonable
from .wire import Emit, Envelope, Error, Fly, Route

__all__ = ["Invocation", "error_frame", "qualified_name"]

_SKIP_MRO: Final = (object, BaseException)


class Invocation:
    """ABI state of one handler call. Not thread-safe: one driver owns it."""

    __slots__ = ("_envelope", "_meta", "_prev", "input_route")

    def __init__(self, envelope: Envelope) -> None:
        r = envelope.route
        self._envelope = envelope
        self.input_route = r
        self._prev = [*r.prev, r.curr]  # never mutated: shared by every emit's route
        # Built on the first GET/SET/DEL: most handlers never touch metadata, and until then
        # the envelope's own route, headers and status are what every emit carries.
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The metadata GET/SET/DEL see (a deep copy of the envelope's)."""
        meta = self._meta
        if meta is None:
            e = self._envelope
            r = e.route
            meta = self._meta = {
                "id": e.id,
                "parent_id": e.parent_id,
                "route": {"prev": list(r.prev), "curr": r.curr, "next": list(r.next)},
                "headers": copy_json(e.headers),
                "status": copy_json(e.status),
            }
        return meta

    # -- the step --------------------------------------------------------------------------

    def step(self, value: Any) -> tuple[Fly | Emit | None, Any]:
        """Apply one yielded value; raises `AbiError` (or `TypeError` for unconvertible data)."""
        if value is None:
            return None, None
        if isinstance(value, tuple):
            return self._verb(value)
        return self.emit(value), None

    def result(self, value: Any) -> Emit | None:
        """A plain function's return value: `None` is no emit, anything else one emit."""
        return None if value is None else self.emit(value)

    def emit(self, value: Any) -> Emit:
        meta = self._meta
        if meta is None:  # metadata untouched: the envelope's, never mutated, can be shared
            e = self._envelope
            nxt = e.route.next
            return Emit(
                payload=to_jsonable(value),
                route=Route(prev=self._prev, curr=nxt[0] if nxt else "", next=nxt[1:]),
                headers=e.headers,
                status=e.status,
            )
        nxt = meta["route"]["next"]
        route = Route(prev=self._prev, curr=nxt[0] if nxt else "", next=nxt[1:])
        h = meta["headers"]
        s = meta["status"]
        return Emit(
            payload=to_jsonable(value),
            route=route,
            headers=copy_json(h) if h else {},
            status=copy_json(s) if s else {},
        )

    def _verb(self, value: tuple[Any, ...]) -> tuple[Fly | Emit | None, Any]:
        verb = value[0] if value else None
        n = len(value)
        if verb == "FLY" and n == 2:
            return Fly(data=_fly_data(value)), None
        if verb == "GET" and n == 2:
            return None, paths.get(self.meta, value[1])
        if verb == "SET" and n == 3:
            self._set(value[1], value[2])
            return None, None
        if verb == "DEL" and n == 2:
            self._del(value[1])
            return None, None
        raise AbiError(_protocol_message(value))

    def _set(self, path: Any, value: Any) -> None:
        steps = paths.parse(path)
        paths.check_write(steps, path, "SET")
        head = steps[0]
        if head == paths.Key("route"):
            trial: dict[str, Any] = {"route": {"next": list(self.meta["route"]["next"])}}
            paths.set_(trial, path, value)
            self.meta["route"]["next"] = _valid_next(trial["route"]["next"], path)
            return
        if len(steps) == 1:
            value = to_jsonable(value)
            if not isinstance(value, dict):
                raise AbiError(f"SET {path!r}: the value must be a map, got {type(value).__name__}")
        paths.set_(self.meta, path, value)

    def _del(self, path: Any) -> None:
        steps = paths.parse(path)
        paths.check_write(steps, path, "DEL")
        if steps[0] == paths.Key("route"):
            trial: dict[str, Any] = {"route": {"next": list(self.meta["route"]["next"])}}
            paths.delete(trial, path)
            self.meta["route"]["next"] = trial["route"].get("next", [])
            return
        paths.delete(self.meta, path)
        self.meta.setdefault("headers", {})


def _fly_data(value: tuple[Any, ...]) -> dict[str, Any]:
    """A FLY's value as a JSON object: a dict, or anything that converts to one the way
    payloads are converted (a dataclass, a pydantic model: upstream's `yield "FLY", Model()`).
    A dict's unconvertible contents stay a `TypeError` naming the type; a value that is not
    an object at all is the ABI protocol error."""
    data = value[1]
    if type(data) is dict:
        return to_jsonable(data)  # type: ignore[no-any-return]
    try:
        data = to_jsonable(data)
    except TypeError:
        data = None
    if type(data) is not dict:
        raise AbiError(_protocol_message(value))
    return data


def _valid_next(nxt: Any, path: str) -> list[str]:
    if not isinstance(nxt, list) or not all(isinstance(a, str) and a for a in nxt):
        raise AbiError(
            f"SET {path!r}: .route.next must be a list of non-empty strings, got {nxt!r}"
        )
    return nxt


def _protocol_message(value: tuple[Any, ...]) -> str:
    verb = value[0] if value else None
    shape = (
        {
            "FLY": '("FLY", dict)',
            "GET": '("GET", path)',
            "SET": '("SET", path, value)',
            "DEL": '("DEL", path)',
        }.get(verb)
        if isinstance(verb, str)
        else None
    )
    if shape is not None:
        got = ", ".join(type(v).__name__ for v in value)
        return f"ABI protocol error: {verb} must be yielded as {shape}, got ({got})"
    return (
        f"ABI protocol error: unknown verb {verb!r} in a yielded tuple of length {len(value)} "
        "(verbs are FLY, GET, SET, DEL; yield a dict or list to emit a payload)"
    )


def qualified_name(cls: type) -> str:
    """`module.QualName`, or the bare name for builtins (as upstream reports `type`)."""
    mod = cls.__module__
    return cls.__qualname__ if mod == "builtins" else f"{mod}.{cls.__qualname__}"


def error_frame(exc: BaseException, *, code: str | None = None) -> Error:
    """The `error` frame for `exc`: code, message, type, mro (without itself, object,
    BaseException) and the full traceback."""
    cls = type(exc)
    return Error(
        code=code or error_code(exc),
        message=str(exc),
        type=qualified_name(cls),
        mro=[qualified_name(c) for c in cls.__mro__[1:] if c not in _SKIP_MRO],
        traceback="".join(traceback.format_exception(exc)),
    )
