"""The MCP door's decisions, with no I/O: flow → tool, arguments → accepted or refused naming the
field, FLY → progress notification, finished task → tool result.

Knows flows, task views and JSON Schema; knows nothing about the `mcp` SDK, HTTP or the task
service's implementation. The shell (`server.py`) turns these plain values into SDK models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
from jsonschema import SchemaError
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from asya_gateway.flows import Flow, Flows
from asya_gateway.service import TaskView

#: The `_meta` key naming the mesh task on every progress notification and on the result.
TASK_ID_META: Final = "asya/task_id"

_json = msgspec.json.Encoder()


class ToolSchemaError(ValueError):
    """A flow whose `input_schema` is not a usable JSON Schema (the message names the flow)."""


class ArgumentsRefused(ValueError):
    """Arguments that break the tool's `inputSchema`; the message names the field."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What `tools/list` shows of one flow."""

    name: str
    description: str
    input_schema: dict[str, Any]


def tool_spec(flow: Flow) -> ToolSpec:
    """The tool a flow is exposed as: its name, description (else a default) and schema."""
    description = flow.description or f"Run the {flow.name!r} flow ({' → '.join(flow.route)})."
    return ToolSpec(flow.name, description, dict(flow.input_schema))


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_violation(error: ValidationError) -> str:
    """One line naming the field: "`a.b`: 3 is not of type 'string'"."""
    where = _field_path(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [r for r in required if r not in error.instance]
        if missing:
            name = f"{where}.{missing[0]}" if where else str(missing[0])
            return f"`{name}`: required argument is missing"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(k for k in error.instance if k not in props)
        if extra:
            name = f"{where}.{extra[0]}" if where else extra[0]
            return f"`{name}`: unexpected argument"
    return f"`{where}`: {error.message}" if where else f"arguments: {error.message}"


@dataclass(slots=True)
class ToolCatalog:
    """The MCP flows as tools, each with its compiled argument validator (built once)."""

    flows: dict[str, Flow] = field(default_factory=dict)
    _validators: dict[str, Validator] = field(default_factory=dict)

    @classmethod
    def build(cls, flows: Flows) -> ToolCatalog:
        cat = cls()
        for flow in flows.mcp():
            schema = flow.input_schema
            try:
                vcls = validator_for(schema)
                vcls.check_schema(schema)
            except SchemaError as exc:
                raise ToolSchemaError(
                    f"flow {flow.name!r}: `input_schema` is not a valid JSON Schema: {exc.message}"
                ) from None
            cat.flows[flow.name] = flow
            cat._validators[flow.name] = vcls(schema)
        return cat

    def tools(self) -> list[ToolSpec]:
        return [tool_spec(f) for f in self.flows.values()]

    def lookup(self, name: str) -> Flow | None:
        """The flow behind tool `name`, or None for an unknown or non-MCP one."""
        return self.flows.get(name)

    def check(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """The arguments as the task's payload; raises ArgumentsRefused naming the field."""
        payload = dict(arguments or {})
        error = best_match(self._validators[name].iter_errors(payload))
        if error is not None:
            raise ArgumentsRefused(describe_violation(error))
        return payload


def fly_message(data: Mapping[str, Any]) -> str:
    """A FLY as a progress message: its `text` if that is a string, else its compact JSON."""
    text = data.get("text")
    return text if isinstance(text, str) else _json.encode(dict(data)).decode()


@dataclass(frozen=True, slots=True)
class Progress:
    """One `notifications/progress` to send."""

    progress: int
    message: str


@dataclass(slots=True)
class CallState:
    """One tool call's stream: counts FLYs (progress 1, 2, …) and collects their texts."""

    task_id: str
    count: int = 0
    texts: list[str] = field(default_factory=list)

    def on_fly(self, data: Mapping[str, Any]) -> Progress:
        self.count += 1
        text = data.get("text")
        if isinstance(text, str):
            self.texts.append(text)
        return Progress(self.count, fly_message(data))


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished call: the one text content, `structuredContent`, `isError`."""

    text: str
    structured: dict[str, Any] | None
    is_error: bool


def structured(result: Any) -> dict[str, Any]:
    """`structuredContent` must be an object: a result that is not one is wrapped."""
    return result if isinstance(result, dict) else {"result": result}


def error_message(error: Any) -> str:
    """The message of a task's error: `{"message": …}` or a bare string (upstream sidecars)."""
    if isinstance(error, dict):
        msg = error.get("message")
        if isinstance(msg, str) and msg:
            return msg
        return _json.encode(error).decode()
    if isinstance(error, str) and error:
        return error
    return "the flow failed"


def _seconds(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _is_flow_timeout(flow: Flow, view: TaskView, error: Any) -> bool:
    """The failure is the flow's timeout: never judged by the message (a handler's own
    "connection timeout" is its own error).

    Either the error is typed `{"type": "Timeout"}` (the gateway's deadline failure, the shape
    the sidecar writes), or the task failed at or after its deadline by the gateway's clock: the
    sidecar's Timeout reaches the record as its message alone, and can land a moment before the
    gateway's own deadline failure. The door creates the task with `deadline_seconds =
    flow.timeout`, so the deadline is `created_at + timeout` (both stamps to the millisecond)."""
    if flow.timeout is None:
        return False
    if isinstance(error, dict) and error.get("type") == "Timeout":
        return True
    created, ended = _seconds(view.created_at), _seconds(view.updated_at)
    return created is not None and ended is not None and ended >= created + flow.timeout - 0.001


def _timeout_text(flow: Flow) -> str:
    return f"flow {flow.name!r} passed its timeout of {flow.timeout:g}s"


def timed_out(flow: Flow, task_id: str) -> Outcome:
    """The call outlived the flow's `timeout` (the door's own guard fired)."""
    return Outcome(f"{_timeout_text(flow)}; task {task_id} was canceled", None, True)


def outcome(flow: Flow, view: TaskView, state: CallState) -> Outcome:
    """The tool result for a task that ended (or paused, which an MCP call cannot wait out)."""
    if view.status == "succeeded":
        result = None if view.result is msgspec.UNSET else view.result
        text = "".join(state.texts) if state.texts else _json.encode(result).decode()
        return Outcome(text, structured(result), False)
    if view.status == "failed":
        error = None if view.error is msgspec.UNSET else view.error
        msg = error_message(error)
        if _is_flow_timeout(flow, view, error):
            msg = f"{_timeout_text(flow)}: {msg}"
        return Outcome(msg, {"error": error} if error is not None else None, True)
    if view.status == "canceled":
        return Outcome(f"task {view.id} was canceled", None, True)
    if view.status == "paused":
        prompt = (view.pause or {}).get("prompt")
        why = f": {prompt}" if isinstance(prompt, str) else ""
        return Outcome(
            f"task {view.id} paused for input{why} (resume it with POST "
            f"/api/v1/mesh/{view.id}/resume)",
            {"pause": view.pause} if view.pause else None,
            True,
        )
    # The watch ended early (the gateway is stopping): the task goes on without this call.
    return Outcome(
        f"the gateway stopped following task {view.id} (status {view.status}); read it later at "
        f"GET /api/v1/mesh/{view.id}",
        None,
        True,
    )


__all__ = [
    "TASK_ID_META",
    "ArgumentsRefused",
    "CallState",
    "Outcome",
    "Progress",
    "ToolCatalog",
    "ToolSchemaError",
    "ToolSpec",
    "describe_violation",
    "error_message",
    "fly_message",
    "outcome",
    "structured",
    "timed_out",
    "tool_spec",
]
