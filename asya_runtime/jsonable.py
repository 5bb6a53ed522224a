"""Typed values → JSON data (maps with str keys, lists, str, int, float, bool, None). Pure.

What upstream Asya converts, we convert, in C via `msgspec.to_builtins`: dataclasses (as dicts),
dates, UUIDs and Decimals (str), sets and frozensets (lists), bytes (base64), enums (their
value). Datetimes and times are written with `isoformat()`, as upstream does
(`2024-06-01T12:00:00+00:00`, where msgspec would write `...Z`): msgspec hands them back
untouched and one pass over the result, only when the input is a container, replaces them.
Pydantic models are recognised by duck typing (`model_dump` for v2,
`dict` + `__fields__` for v1): pydantic is not a dependency. Anything else raises `TypeError`
naming the type, which the ABI reports as `processing_error`.

The result never shares a mutable container with the input, so it doubles as the deep copy the
ABI needs for SET values and emitted payloads.

This module knows nothing about frames, sockets or handlers.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

import msgspec

__all__ = ["copy_json", "to_jsonable"]


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):  # pydantic v2
        return dump(mode="json")
    legacy = getattr(obj, "dict", None)
    if callable(legacy) and hasattr(obj, "__fields__"):  # pydantic v1
        return legacy()
    raise TypeError(f"Not JSON serializable: {_type_name(type(obj))}")


def _type_name(cls: type) -> str:
    mod = cls.__module__
    return cls.__qualname__ if mod == "builtins" else f"{mod}.{cls.__qualname__}"


_JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_TIMES: Final = (datetime.datetime, datetime.time)
_TIME_TYPES: Final = frozenset(_TIMES)
_to_builtins: Final = msgspec.to_builtins


def to_jsonable(value: Any) -> Any:
    """A fresh JSON-data copy of `value`; `TypeError` naming the type if it can't be converted."""
    t = type(value)
    if t in _JSON_SCALARS:
        return value
    if t in _TIME_TYPES:
        return value.isoformat()
    if (t is dict or t is list) and _is_json(value):
        # Already JSON data (the common case): a plain C copy, without the keyword arguments
        # (~0.4 µs to parse) and the walk for datetimes below.
        return _to_builtins(value)
    try:
        out = _to_builtins(value, builtin_types=_TIMES, enc_hook=_enc_hook, str_keys=True)
    except TypeError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. an int beyond 64 bits
        raise TypeError(f"Not JSON serializable: {exc}") from exc
    t = type(out)
    if t is dict or t is list:
        _isoformat_times(out)
    elif t is tuple:
        out = _fixed_tuple(out)
    return out


def _is_json(node: dict[Any, Any] | list[Any]) -> bool:
    """Whether `node` is JSON data as it is: dicts with str keys, lists, and JSON scalars
    (exact types: a str subclass or a tuple takes the converting path)."""
    if type(node) is dict:
        for k, v in node.items():
            if type(k) is not str:
                return False
            t = type(v)
            if t not in _JSON_SCALARS and not ((t is dict or t is list) and _is_json(v)):
                return False
        return True
    for v in node:
        t = type(v)
        if t not in _JSON_SCALARS and not ((t is dict or t is list) and _is_json(v)):
            return False
    return True


def _isoformat_times(node: dict[Any, Any] | list[Any]) -> None:
    """Replace, in place, every datetime/time left in fresh builtins by its `isoformat()`
    (tuples, which msgspec keeps, become lists: JSON arrays either way)."""
    items = node.items() if type(node) is dict else enumerate(node)
    for k, v in items:  # assigning existing keys or indexes while iterating is allowed
        t = type(v)
        if t is dict or t is list:
            _isoformat_times(v)
        elif t in _TIME_TYPES:
            node[k] = v.isoformat()
        elif t is tuple:
            node[k] = _fixed_tuple(v)


def _fixed_tuple(node: tuple[Any, ...]) -> list[Any]:
    out = list(node)
    _isoformat_times(out)
    return out


def copy_json(value: Any) -> Any:
    """Deep copy of JSON data (dicts and lists are new; scalars are immutable and shared)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [copy_json(v) for v in value]
    return value
