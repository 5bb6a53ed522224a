"""Flows: named routes of actors that the front doors (REST, A2A, MCP) expose (front-doors.md).

Pure: a flows file's bytes in, a validated `Flows` registry out, or a `FlowsError` whose one
line names the flow and the field. No I/O beyond reading the file in `load_flows`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from asya_mesh.names import validate_actor_name

NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class FlowsError(ValueError):
    """A flows file that cannot be used; the message names the flow and the field."""


class Flow(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One flow: a named route, with what the A2A card and the MCP tool list show of it."""

    name: str
    route: list[str]
    description: str = ""
    timeout: float | None = None  # seconds; becomes the task's deadline_at
    input_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})
    tags: list[str] = []
    examples: list[str] = []
    a2a: bool = True
    mcp: bool = True


class _File(msgspec.Struct, kw_only=True):
    flows: list[dict[str, Any]]


class Flows:
    """The configured flows, by name, in file order."""

    def __init__(self, flows: list[Flow] | None = None) -> None:
        self._by_name: dict[str, Flow] = {}
        for f in flows or []:
            if f.name in self._by_name:
                raise FlowsError(f"flow {f.name!r}: `name` is used twice")
            self._by_name[f.name] = f

    def get(self, name: str) -> Flow | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def a2a(self) -> list[Flow]:
        return [f for f in self if f.a2a]

    def mcp(self) -> list[Flow]:
        return [f for f in self if f.mcp]

    def with_flow(self, flow: Flow) -> Flows:
        """A registry with `flow` added (or replacing one of the same name)."""
        return Flows([f for f in self if f.name != flow.name] + [flow])


def _where(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.route[0]`": keep the field path without the `$.`
    text = str(exc)
    m = re.search(r"at `\$\.?([^`]*)`", text)
    field = m.group(1) if m else ""
    reason = text.split(" - at ")[0]
    return f"`{field}`: {reason}" if field else reason


def parse_flow(obj: Any, index: int) -> Flow:
    """One flow object; raises FlowsError naming it (by name, else by position) and the field."""
    label = f"flow #{index + 1}"
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        label = f"flow {obj['name']!r}"
    try:
        flow = msgspec.convert(obj, Flow, strict=False)
    except msgspec.ValidationError as exc:
        raise FlowsError(f"{label}: {_where(exc)}") from None
    if not NAME_PATTERN.match(flow.name):
        raise FlowsError(f"{label}: `name` must match {NAME_PATTERN.pattern}")
    if not flow.route:
        raise FlowsError(f"{label}: `route` must name at least one actor")
    for i, actor in enumerate(flow.route):
        try:
            validate_actor_name(actor)
        except ValueError as exc:
            raise FlowsError(f"{label}: `route[{i}]`: {exc}") from None
    if flow.timeout is not None and not flow.timeout > 0:
        raise FlowsError(f"{label}: `timeout` must be a positive number of seconds")
    if flow.input_schema.get("type", "object") != "object":
        raise FlowsError(f"{label}: `input_schema` must describe an object (`type: object`)")
    return flow


def parse_flows(data: bytes, *, toml: bool = False) -> Flows:
    """A flows document (`{"flows": [...]}` as JSON, or `[[flows]]` tables as TOML)."""
    try:
        raw: Any = tomllib.loads(data.decode()) if toml else msgspec.json.decode(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, msgspec.DecodeError) as exc:
        raise FlowsError(f"not valid {'TOML' if toml else 'JSON'}: {exc}") from None
    try:
        doc = msgspec.convert(raw, _File)
    except msgspec.ValidationError as exc:
        raise FlowsError(f'expected {{"flows": [...]}}: {_where(exc)}') from None
    return Flows([parse_flow(obj, i) for i, obj in enumerate(doc.flows)])


def load_flows(path: str | Path) -> Flows:
    """Read and validate a flows file (`.toml` as TOML, anything else as JSON)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FlowsError(f"cannot read flows file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        return parse_flows(data, toml=p.suffix.lower() == ".toml")
    except FlowsError as exc:
        raise FlowsError(f"{p}: {exc}") from None


__all__ = ["NAME_PATTERN", "Flow", "Flows", "FlowsError", "load_flows", "parse_flow", "parse_flows"]
