"""Strict checks of what the door emits, with the official SDK's own types.

v1.0: protobuf `ParseDict` *without* `ignore_unknown_fields` (the SDK's client is lenient and
would hide a wrong field); v0.3: the SDK's pydantic models, which refuse missing `final`,
`kind`, lower-case states and the rest.
"""

from __future__ import annotations

from typing import Any

from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as pb
from google.protobuf.json_format import ParseDict

_V03_KIND = {
    "task": v03.Task,
    "status-update": v03.TaskStatusUpdateEvent,
    "artifact-update": v03.TaskArtifactUpdateEvent,
    "message": v03.Message,
}


def check_v1_event(result: dict[str, Any]) -> pb.StreamResponse:
    """A v1.0 StreamResponse: exactly one member, every field known to the proto."""
    assert len(result) == 1, f"a StreamResponse sets exactly one member: {sorted(result)}"
    return ParseDict(result, pb.StreamResponse())


def check_v1_task(task: dict[str, Any]) -> pb.Task:
    return ParseDict(task, pb.Task())


def check_v03_event(result: dict[str, Any]) -> Any:
    model = _V03_KIND[result["kind"]]
    return model.model_validate(result)


def check_response(obj: dict[str, Any]) -> None:
    """A well-formed JSON-RPC 2.0 response: jsonrpc, id, exactly one of result / error."""
    assert obj.get("jsonrpc") == "2.0", obj
    assert "id" in obj, obj
    assert ("result" in obj) != ("error" in obj), obj
    if "error" in obj:
        err = obj["error"]
        assert isinstance(err.get("code"), int) and isinstance(err.get("message"), str), obj
        assert err["message"], obj


__all__ = ["check_response", "check_v03_event", "check_v1_event", "check_v1_task"]
