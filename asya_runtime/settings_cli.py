"""The command line and the docs derived from declared options: argparse flags, help lines,
defaults as shown, and the configuration tables of docs/configuration.md."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import msgspec

from .settings import Option, options

_MISSING: Final = msgspec.NODEFAULT  # an option declared without a default: required

__all__ = [
    "Parser",
    "add_arguments",
    "format_default",
    "given_from_args",
    "help_line",
    "markdown_table",
]


def format_default(o: Option) -> str:
    """The default as the help and the docs show it."""
    if o.default_text is not None:
        return o.default_text
    d = o.default
    if d is _MISSING:
        return "required"
    if d is None:
        return "unset"
    if isinstance(d, bool):
        return "true" if d else "false"
    if o.duration and isinstance(d, int | float):
        return _go_duration(float(d))
    if d == "":
        return "empty"
    if isinstance(d, list | tuple):
        return ",".join(map(str, d)) if d else "none"
    return str(d)


def _go_duration(s: float) -> str:
    if s == 0:
        return "0"
    if s >= 60 and s % 60 == 0:
        m = int(s // 60)
        return f"{m // 60}h" if m % 60 == 0 else f"{m}m"
    if s >= 1:
        return f"{s:g}s"
    return f"{s * 1000:g}ms"


def help_line(o: Option) -> str:
    """`description [VAR, default D]`: the one wording every command uses."""
    where = f"{o.env}, " if o.env else ""
    default = "required" if o.default is _MISSING else f"default {format_default(o)}"
    return f"{o.help} [{where}{default}]"


def _metavar(o: Option) -> str:
    if o.metavar:
        return o.metavar
    if o.duration:
        return "DURATION"
    if o.base in (int, int | None):
        return "N"
    return o.path[-1].upper()


def add_arguments(
    parser: argparse.ArgumentParser, cls: type[msgspec.Struct], *, skip: Sequence[str] = ()
) -> None:
    """One argparse option per declared option with a flag (values stay strings; `load`
    converts them, so a flag and its variable are read the same way)."""
    for o in options(cls):
        if o.flag is None or o.dest in skip:
            continue
        text = help_line(o).replace("%", "%%")
        if o.is_list:
            parser.add_argument(
                o.flag,
                dest=o.dest,
                action="append",
                default=None,
                metavar=_metavar(o),
                help=text,
            )
        elif o.is_bool:
            no = "--no-" + o.flag.removeprefix("--")
            parser.add_argument(o.flag, dest=o.dest, action="store_true", default=None, help=text)
            parser.add_argument(no, dest=o.dest, action="store_false", help=argparse.SUPPRESS)
        else:
            parser.add_argument(o.flag, dest=o.dest, default=None, metavar=_metavar(o), help=text)


def given_from_args(args: argparse.Namespace, cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The flag values of `cls`'s options found in `args` (None = not given)."""
    return {o.dest: getattr(args, o.dest, None) for o in options(cls)}


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line naming the flag (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def markdown_table(cls: type[msgspec.Struct], *, skip: Sequence[str] = ()) -> str:
    """The docs' table of `cls`'s options: variable, option, default, meaning."""
    rows = ["| variable | option | default | meaning |", "|---|---|---|---|"]
    for o in options(cls):
        if o.dest in skip:
            continue
        env = f"`{o.env}`" if o.env else "—"
        flag = f"`{o.flag}`" if o.flag else "—"
        rows.append(f"| {env} | {flag} | `{format_default(o)}` | {o.help} |")
    return "\n".join(rows) + "\n"
