"""Handler spec → a callable and its kind. Imports user code; no sockets, no event loop.

Accepted specs:
    module:attr               module:Class.method
    module.attr               module.Class.method     (upstream's ASYA_HANDLER form; the
                                                       longest importable module prefix wins)

A class is instantiated once, here, with no arguments (late binding: this runs before the
socket exists). Every failure is a `HandlerLoadError` whose message is one line saying what
failed; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .errors import HandlerLoadError

__all__ = ["HandlerKind", "LoadedHandler", "ensure_cwd_importable", "kind_of", "load_handler"]

_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_COLON: Final = re.compile(rf"^({_IDENT}(?:\.{_IDENT})*):({_IDENT}(?:\.{_IDENT})?)$")
_DOTTED: Final = re.compile(rf"^{_IDENT}(?:\.{_IDENT})+$")


class HandlerKind(enum.Enum):
    FUNCTION = "sync function"
    ASYNC_FUNCTION = "async function"
    GENERATOR = "sync generator"
    ASYNC_GENERATOR = "async generator"


@dataclass(frozen=True, slots=True)
class LoadedHandler:
    spec: str
    func: Callable[[Any], Any]
    kind: HandlerKind


def kind_of(func: Callable[..., Any]) -> HandlerKind:
    """Classify a callable the way the driver will run it."""
    target: Any = func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - callable instances
        if call is not None and not inspect.isclass(target) and not inspect.isbuiltin(target):
            target = call
    if inspect.isasyncgenfunction(target):
        return HandlerKind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return HandlerKind.GENERATOR
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(func):
        return HandlerKind.ASYNC_FUNCTION
    return HandlerKind.FUNCTION


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise HandlerLoadError(f"module {name!r} not found") from exc
        raise HandlerLoadError(f"importing module {name!r} failed: {_one_line(exc)}") from exc
    except Exception as exc:
        raise HandlerLoadError(f"importing module {name!r} failed: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"{exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _split(spec: str) -> tuple[Any, str, list[str]]:
    """(module object, module name, attribute parts)."""
    m = _COLON.match(spec)
    if m:
        mod_name, attrs = m.group(1), m.group(2).split(".")
        return _import(mod_name), mod_name, attrs
    if ":" in spec or not _DOTTED.match(spec):
        raise HandlerLoadError(
            f"bad handler spec {spec!r}: expected module:function, module:Class.method, "
            "module.function or module.Class.method"
        )
    parts = spec.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        mod_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (
                mod_name == exc.name or mod_name.startswith(exc.name + ".")
            ):
                continue  # this prefix is not a module: try a shorter one
            raise HandlerLoadError(
                f"importing module {mod_name!r} failed: {_one_line(exc)}"
            ) from exc
        except Exception as exc:
            raise HandlerLoadError(
                f"importing module {mod_name!r} failed: {_one_line(exc)}"
            ) from exc
        attrs = parts[cut:]
        if len(attrs) > 2:
            raise HandlerLoadError(
                f"bad handler spec {spec!r}: after module {mod_name!r} expected function or "
                f"Class.method, got {'.'.join(attrs)!r}"
            )
        return module, mod_name, attrs
    raise HandlerLoadError(f"no importable module in handler spec {spec!r}")


def load_handler(spec: str) -> LoadedHandler:
    """Import, instantiate (for Class.method) and classify the handler named by `spec`."""
    spec = spec.strip()
    if not spec:
        raise HandlerLoadError("no handler given: pass SPEC or set ASYA_HANDLER")
    module, mod_name, attrs = _split(spec)
    obj = getattr(module, attrs[0], _MISSING)
    if len(attrs) == 1 and (inspect.ismodule(obj) or obj is _MISSING):
        _refuse_module_spec(spec, f"{mod_name}.{attrs[0]}")
    if obj is _MISSING:
        raise HandlerLoadError(f"module {mod_name!r} has no attribute {attrs[0]!r}")
    if len(attrs) == 1:
        if inspect.isclass(obj):
            raise HandlerLoadError(
                f"{mod_name}.{attrs[0]} is a class: name a method, "
                f"e.g. {mod_name}:{attrs[0]}.handle"
            )
        func = obj
    else:
        if not inspect.isclass(obj):
            raise HandlerLoadError(f"{mod_name}.{attrs[0]} is not a class")
        try:
            instance = obj()
        except Exception as exc:
            raise HandlerLoadError(
                f"building {mod_name}.{attrs[0]}() with no arguments failed: {_one_line(exc)}"
            ) from exc
        func = getattr(instance, attrs[1], _MISSING)
        if func is _MISSING:
            raise HandlerLoadError(f"class {mod_name}.{attrs[0]} has no attribute {attrs[1]!r}")
    name = f"{mod_name}.{'.'.join(attrs)}"
    if not callable(func):
        raise HandlerLoadError(f"{name} is not callable (it is a {type(func).__name__})")
    return LoadedHandler(spec=spec, func=func, kind=kind_of(func))


_MISSING: Final = object()


def _refuse_module_spec(spec: str, name: str) -> None:
    """`spec` names a module, not a handler in it: say so, with the two accepted forms."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return  # not a module: the caller reports the missing attribute
    example = "handle"
    try:
        module = importlib.import_module(name)
    except Exception:
        module = None
    if module is not None:
        for attr, value in vars(module).items():
            if (
                not attr.startswith("_")
                and inspect.isfunction(value)
                and value.__module__ == module.__name__
            ):
                example = attr
                break
    raise HandlerLoadError(
        f"{spec!r} names the module {name!r}, but a handler name is missing: use "
        f"module:function or module:Class.method (e.g. {name}:{example})"
    )


def ensure_cwd_importable() -> None:
    """Put the working directory on `sys.path`, as `python -m`/uvicorn do for app modules."""
    if "" not in sys.path and "." not in sys.path:
        import os

        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
