"""Configuration declared once: each option a field of a frozen msgspec Struct, env and CLI derived.

A field is an option when its annotation carries `opt(...)` (a `msgspec.Meta` whose `extra`
holds the variable, the flag and how to read a string), e.g.

    concurrency: Annotated[int, opt("ASYA_CONCURRENCY", "envelopes in flight at once", ge=1)] = 1

`load` builds the Struct from a flag value (given), else the variable, else the field default;
each value goes through `msgspec.convert` (strict=False, Go durations via `parse_duration`) and a
bad one raises `ConfigError` naming the flag or variable, in one line. A field whose type is
itself such a Struct is read from the same sources (e.g. the sidecar's `transport`).
`settings_cli` derives argparse options, their help text and the docs' tables from the same
declarations. Stdlib + msgspec only: the runtime uses it.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from .durations import parse_duration

__all__ = [
    "ConfigError",
    "Option",
    "load",
    "load_one",
    "one_of",
    "opt",
    "options",
]

S = TypeVar("S", bound=msgspec.Struct)
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_MISSING: Final = msgspec.NODEFAULT


class ConfigError(ValueError):
    """A bad configuration value; the one-line message starts with the variable or flag."""


def opt(
    env: str | None,
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    default_text: str | None = None,
    duration: bool = False,
    empty_ok: bool = False,
    check: Callable[[Any], Any] | None = None,
    cli: bool = True,
    **constraints: Any,
) -> msgspec.Meta:
    """The declaration of one option: its variable (None = flag only), one-line help, and how
    to read it (`duration`: Go strings; `empty_ok`: an empty variable is a value, not unset;
    `check`: returns the value, maybe normalised, or raises ValueError; `cli=False`: no flag)."""
    extra = {
        "env": env,
        "flag": flag,
        "metavar": metavar,
        "default_text": default_text,
        "duration": duration,
        "empty_ok": empty_ok,
        "check": check,
        "cli": cli,
    }
    return msgspec.Meta(description=help, extra=extra, **constraints)


def one_of(*choices: str, fold: bool = False) -> Callable[[Any], Any]:
    """A `check` accepting only `choices` (`fold`: case-insensitive, returns the choice)."""

    def check(value: Any) -> Any:
        key = value.lower() if fold and isinstance(value, str) else value
        for c in choices:
            if key == (c.lower() if fold else c):
                return c
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")

    return check


@dataclass(frozen=True)
class Option:
    """One declared option, flattened (`path` = field names from the top Struct)."""

    path: tuple[str, ...]
    annotation: Any  # the field's full annotation, constraints included
    base: Any  # the type without Annotated
    env: str | None
    flag: str | None
    metavar: str | None
    help: str
    default: Any
    default_text: str | None
    duration: bool
    empty_ok: bool
    check: Callable[[Any], Any] | None

    dest: str = ""  # "_".join(path): the argparse dest and the key of `given`

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", "_".join(self.path))

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.base) is list

    @property
    def is_bool(self) -> bool:
        return self.base is bool or self.base == (bool | None)


def _meta_of(annotation: Any) -> tuple[Any, dict[str, Any] | None, str]:
    if typing.get_origin(annotation) is not typing.Annotated:
        return annotation, None, ""
    base, *metas = typing.get_args(annotation)
    for m in metas:
        if isinstance(m, msgspec.Meta) and m.extra and "env" in m.extra:
            return base, dict(m.extra), m.description or ""
    return base, None, ""


def _is_settings(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct) and bool(options(tp))


@functools.cache
def _hints(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def options(cls: type[msgspec.Struct], prefix: tuple[str, ...] = ()) -> tuple[Option, ...]:
    """Every option `cls` declares, nested settings Structs flattened in field order (cached:
    a class's declarations do not change)."""
    hints = _hints(cls)
    defaults = {
        f.name: f.default_factory() if f.default_factory is not _MISSING else f.default
        for f in msgspec.structs.fields(cls)
    }
    out: list[Option] = []
    for name in cls.__struct_fields__:
        base, extra, desc = _meta_of(hints[name])
        if extra is None:
            if (
                isinstance(base, type)
                and issubclass(base, msgspec.Struct)
                and base is not cls
                and (inner := options(base, (*prefix, name)))
            ):
                out.extend(inner)
            continue
        flag = extra["flag"] or ("--" + name.replace("_", "-"))
        out.append(
            Option(
                path=(*prefix, name),
                annotation=hints[name],
                base=base,
                env=extra["env"],
                flag=flag if extra["cli"] else None,
                metavar=extra["metavar"],
                help=desc,
                default=defaults.get(name, _MISSING),
                default_text=extra["default_text"],
                duration=extra["duration"],
                empty_ok=extra["empty_ok"],
                check=extra["check"],
            )
        )
    return tuple(out)


def _dec_hook(tp: type, obj: Any) -> Any:
    raise NotImplementedError(f"unsupported type {tp!r}")


def _convert(o: Option, raw: Any, source: str) -> Any:
    try:
        if isinstance(raw, str):
            if o.duration:
                raw = parse_duration(raw)
            elif o.is_list:  # a variable holds a comma-separated list
                raw = [item.strip() for item in raw.split(",") if item.strip()]
            elif o.is_bool:
                low = raw.strip().lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError(f"invalid value {raw!r} (expected true/false)")
                raw = low in _TRUE
        elif o.is_list and isinstance(raw, list):  # a repeated flag, each maybe a,b,c
            raw = [i.strip() for r in raw for i in str(r).split(",") if i.strip()]
        value = msgspec.convert(raw, o.annotation, strict=False, dec_hook=_dec_hook)
        if o.check is not None and value is not None:
            value = o.check(value)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: invalid value {raw!r} ({_plain(exc)})") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return value


_TYPE_WORDS: Final = {
    "`int`": "an integer",
    "`float`": "a number",
    "`bool`": "true/false",
    "`str`": "a string",
    "`int | null`": "an integer",
    "`float | null`": "a number",
    "`str | null`": "a string",
}


def _plain(exc: msgspec.ValidationError) -> str:
    """msgspec's message without its path and the type it got: `expected an integer >= 1`."""
    text = str(exc).split(" - at ", 1)[0].split(", got ", 1)[0]
    for k, v in _TYPE_WORDS.items():
        text = text.replace(k, v)
    return text[:1].lower() + text[1:] if text else "invalid"


def _raw_values(
    opts: Iterable[Option], env: Mapping[str, str], given: Mapping[str, Any]
) -> dict[str, Any]:
    """`dest -> converted value` for every option set by a flag (given) or a variable."""
    out: dict[str, Any] = {}
    for o in opts:
        if given.get(o.dest) is not None:
            try:
                out[o.dest] = _convert(o, given[o.dest], o.flag or o.dest)
            except ConfigError as exc:  # name the variable too: it is what the docs list
                raise ConfigError(f"{exc}; variable {o.env}" if o.env else str(exc)) from None
        elif o.env is not None and o.env in env and (env[o.env] != "" or o.empty_ok):
            out[o.dest] = _convert(o, env[o.env], o.env)
    return out


def load(
    cls: type[S],
    env: Mapping[str, str],
    given: Mapping[str, Any] | None = None,
    *,
    required: Iterable[str] = (),
) -> S:
    """Build `cls` from `given` (flag values by `Option.dest`; None = not given), then `env`,
    then defaults. Raises `ConfigError` naming the flag or variable of a bad or missing value."""
    values = _raw_values(options(cls), env, given or {})
    by_dest = {o.dest: o for o in options(cls)}
    for dest in required:
        if values.get(dest) in (None, ""):
            o = by_dest[dest]
            names = " / ".join(n for n in (o.env, o.flag) if n)
            raise ConfigError(f"{names} is required ({o.help})")
    return _build(cls, values, ())


def load_one(
    cls: type[msgspec.Struct],
    dest: str,
    env: Mapping[str, str],
    given: Mapping[str, Any] | None = None,
) -> Any:
    """One option of `cls` (by `Option.dest`) read and checked as `load` would, the others
    untouched: for what a CLI needs before or without the whole Struct (e.g. the log level that
    decides whether a failure shows its traceback). Raises `ConfigError` naming the variable."""
    (o,) = (o for o in options(cls) if o.dest == dest)
    values = _raw_values((o,), env, given or {})
    if dest not in values and o.default is _MISSING:
        raise ConfigError(f"{' / '.join(n for n in (o.env, o.flag) if n)} is required ({o.help})")
    return values.get(dest, o.default)


@functools.cache
def _plan(
    cls: type[msgspec.Struct], prefix: tuple[str, ...]
) -> tuple[tuple[str, str, type[msgspec.Struct] | None], ...]:
    """How to build `cls`: (field, dest, nested settings Struct or None) per field."""
    out = []
    for name, hint in _hints(cls).items():
        if name not in cls.__struct_fields__:
            continue
        base, extra, _ = _meta_of(hint)
        nested = base if extra is None and _is_settings(base) else None
        out.append((name, "_".join((*prefix, name)), nested))
    return tuple(out)


def _build(cls: type[S], values: Mapping[str, Any], prefix: tuple[str, ...]) -> S:
    kwargs: dict[str, Any] = {}
    for name, dest, nested in _plan(cls, prefix):
        if nested is not None:
            kwargs[name] = _build(nested, values, (*prefix, name))
        elif dest in values:
            kwargs[name] = values[dest]
    return cls(**kwargs)
