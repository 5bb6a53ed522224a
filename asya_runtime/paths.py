"""jq-like metadata paths: parse, GET, SET, DEL and the access rules. Pure.

Grammar (asya-abi/1): a path starts with `.`; steps are `.key` (letters, digits, `_`, `-`),
`["any key"]` (a JSON string literal), `[int]` (negative counts from the end) and
`[start:stop]` (either end optional; only as the last step of a SET on a list). A `.` may
precede a bracket (`.["x"]`, as jq allows).

The tree these functions walk is the invocation's metadata: a dict with `id`, `parent_id`,
`route` {`prev`, `curr`, `next`}, `headers`, `status`. The payload is not in it.

Semantics chosen where the spec is silent (docs/abi.md lists them):
- GET of a missing key, an out-of-range index or anything below a missing value is `None`;
  stepping into a value of the wrong kind (a key into a list, anything into a string) is an error.
- SET creates missing (or null) intermediate maps; an index step must be in range.
- DEL of something missing is a no-op. DEL `.headers` or `.route.next` itself empties it.
- Access is decided on the parsed steps, not on the raw string, so `.route["next"]` is
  `.route.next`.

This module knows nothing about frames, sockets or handlers; errors are `AbiError`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NamedTuple

from .errors import AbiError
from .jsonable import copy_json, to_jsonable

__all__ = ["Index", "Key", "Slice", "Step", "check_write", "delete", "get", "parse", "set_"]


class Key(NamedTuple):
    name: str


class Index(NamedTuple):
    pos: int


class Slice(NamedTuple):
    start: int | None
    stop: int | None


Step = Key | Index | Slice

_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_INT: Final = re.compile(r"-?[0-9]+")
_SLICE: Final = re.compile(r"(-?[0-9]+)?:(-?[0-9]+)?")
_STR: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_METADATA: Final = frozenset({"id", "parent_id", "route", "headers", "status"})
_ROUTE_KEYS: Final = frozenset({"prev", "curr", "next"})

_cache: dict[str, tuple[Step, ...]] = {}


def parse(path: object) -> tuple[Step, ...]:
    """The steps of `path`; `AbiError` saying where it went wrong."""
    if not isinstance(path, str):
        raise AbiError(f"path must be a string, got {type(path).__name__}")
    cached = _cache.get(path)
    if cached is not None:
        return cached
    steps = _parse(path)
    if len(_cache) < 1024:
        _cache[path] = steps
    return steps


def _parse(path: str) -> tuple[Step, ...]:
    if not path.startswith("."):
        raise AbiError(f"invalid path {path!r}: must start with '.'")
    steps: list[Step] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == ".":
            i += 1
            if i < n and path[i] == "[":
                continue
            m = _KEY.match(path, i)
            if m is None:
                if i >= n and not steps:
                    raise AbiError(f"invalid path {path!r}: empty path")
                raise AbiError(f"invalid path {path!r}: expected a key at position {i}")
            steps.append(Key(m.group()))
            i = m.end()
        elif c == "[":
            close = _bracket(path, i)
            inner = path[i + 1 : close]
            steps.append(_bracket_step(path, inner, i))
            i = close + 1
        else:
            raise AbiError(f"invalid path {path!r}: unexpected {c!r} at position {i}")
    if not steps:
        raise AbiError(f"invalid path {path!r}: empty path")
    return tuple(steps)


def _bracket(path: str, i: int) -> int:
    m = _STR.match(path, i + 1)
    close = m.end() if m else path.find("]", i + 1)
    if close < 0 or close >= len(path) or path[close] != "]":
        raise AbiError(f"invalid path {path!r}: unclosed '[' at position {i}")
    return close


def _bracket_step(path: str, inner: str, pos: int) -> Step:
    if _STR.fullmatch(inner):
        try:
            return Key(json.loads(inner))
        except ValueError as exc:
            raise AbiError(f"invalid path {path!r}: bad string at position {pos}") from exc
    if _INT.fullmatch(inner):
        return Index(int(inner))
    m = _SLICE.fullmatch(inner)
    if m:
        a, b = m.groups()
        return Slice(None if a is None else int(a), None if b is None else int(b))
    raise AbiError(f"invalid path {path!r}: bad bracket [{inner}] at position {pos}")


def _show(steps: tuple[Step, ...]) -> str:
    out = []
    for s in steps:
        if isinstance(s, Key):
            out.append(f".{s.name}" if _KEY.fullmatch(s.name) else f"[{json.dumps(s.name)}]")
        elif isinstance(s, Index):
            out.append(f"[{s.pos}]")
        else:
            a = "" if s.start is None else s.start
            b = "" if s.stop is None else s.stop
            out.append(f"[{a}:{b}]")
    return "".join(out)


def _check_root(steps: tuple[Step, ...], path: str) -> None:
    head = steps[0]
    if not isinstance(head, Key) or head.name not in _METADATA:
        what = "the payload is the handler's argument, not" if head == Key("payload") else "not"
        raise AbiError(
            f"path {path!r} is {what} envelope metadata "
            "(.id, .parent_id, .route.prev/.curr/.next, .headers, .status)"
        )
    if head.name == "route" and len(steps) > 1:
        sub = steps[1]
        if not isinstance(sub, Key) or sub.name not in _ROUTE_KEYS:
            raise AbiError(f"path {path!r}: .route has only .prev, .curr and .next")


def check_write(steps: tuple[Step, ...], path: str, verb: str) -> None:
    """Refuse a SET/DEL outside `.route.next`, `.headers`, `.status` (and DEL of `.status`)."""
    _check_root(steps, path)
    head = steps[0].name  # type: ignore[union-attr]
    if head in ("headers", "status"):
        if verb == "DEL" and head == "status" and len(steps) == 1:
            raise AbiError(f"{verb} denied for path {path!r}: .status itself cannot be deleted")
        return
    if head == "route" and len(steps) >= 2 and steps[1] == Key("next"):
        return
    raise AbiError(
        f"{verb} denied for path {path!r}: only .route.next, .headers and .status are writable"
    )


def _wrong(steps: tuple[Step, ...], k: int, node: Any) -> AbiError:
    return AbiError(
        f"path {_show(steps)!r}: cannot apply {_show(steps[k : k + 1])} "
        f"to a {type(node).__name__} at {_show(steps[:k]) or '.'}"
    )


def get(tree: dict[str, Any], path: str) -> Any:
    """GET: a deep copy of the value at `path`, `None` if missing."""
    steps = parse(path)
    _check_root(steps, path)
    node: Any = tree
    for k, step in enumerate(steps):
        if node is None:
            return None
        if isinstance(step, Key):
            if not isinstance(node, dict):
                raise _wrong(steps, k, node)
            node = node.get(step.name)
        elif isinstance(step, Index):
            if not isinstance(node, list):
                raise _wrong(steps, k, node)
            i = step.pos
            node = node[i] if -len(node) <= i < len(node) else None
        else:
            raise AbiError(f"path {path!r}: a slice is allowed only as the last step of a SET")
    return copy_json(node)


def _parent(tree: dict[str, Any], steps: tuple[Step, ...], create: bool) -> Any:
    node: Any = tree
    for k, step in enumerate(steps[:-1]):
        if isinstance(step, Key):
            if not isinstance(node, dict):
                raise _wrong(steps, k, node)
            child = node.get(step.name)
            if child is None:
                if not create:
                    return None
                child = node[step.name] = {}
            node = child
        elif isinstance(step, Index):
            if not isinstance(node, list):
                raise _wrong(steps, k, node)
            if not -len(node) <= step.pos < len(node):
                if not create:
                    return None
                raise AbiError(f"path {_show(steps)!r}: index {step.pos} out of range")
            node = node[step.pos]
        else:
            raise AbiError(f"path {_show(steps)!r}: a slice is allowed only as the last step")
    return node


def set_(tree: dict[str, Any], path: str, value: Any) -> None:
    """SET (access already checked by the caller via `check_write`): store a JSON copy."""
    steps = parse(path)
    value = to_jsonable(value)
    node = _parent(tree, steps, create=True)
    last = steps[-1]
    k = len(steps) - 1
    if isinstance(last, Key):
        if not isinstance(node, dict):
            raise _wrong(steps, k, node)
        node[last.name] = value
    elif isinstance(last, Index):
        if not isinstance(node, list):
            raise _wrong(steps, k, node)
        if not -len(node) <= last.pos < len(node):
            raise AbiError(f"path {path!r}: index {last.pos} out of range")
        node[last.pos] = value
    else:
        if not isinstance(node, list):
            raise _wrong(steps, k, node)
        if not isinstance(value, list):
            raise AbiError(f"path {path!r}: a slice SET needs a list, got {type(value).__name__}")
        node[last.start : last.stop] = value


def delete(tree: dict[str, Any], path: str) -> None:
    """DEL (access already checked): remove the value; missing is a no-op."""
    steps = parse(path)
    node = _parent(tree, steps, create=False)
    last = steps[-1]
    if node is None:
        return
    k = len(steps) - 1
    if isinstance(last, Key):
        if not isinstance(node, dict):
            raise _wrong(steps, k, node)
        node.pop(last.name, None)
    elif isinstance(last, Index):
        if not isinstance(node, list):
            raise _wrong(steps, k, node)
        if -len(node) <= last.pos < len(node):
            del node[last.pos]
    else:
        raise AbiError(f"path {path!r}: a slice is allowed only as the last step of a SET")
