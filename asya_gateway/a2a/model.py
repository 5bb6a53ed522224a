"""The A2A events this door emits, version-neutral, and their v1.0 / v0.3 JSON renderings.

Pure: Structs in, JSON-ready dicts out. A *part* here is already in v1.0 shape (`{"text": t}`,
`{"data": d}`, `{"url": u, ...}`, `{"raw": b64, ...}`); a *message* is a dict with `messageId`,
`role` ("user" | "agent"), `parts` and optional `taskId`/`contextId`/`metadata`. Knows nothing
about the mesh, HTTP or JSON-RPC framing.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

Version = Literal["1.0", "0.3"]

#: Neutral task states (the suffix of v1.0's `TASK_STATE_*`).
TERMINAL_STATES: Final = frozenset({"COMPLETED", "FAILED", "CANCELED", "REJECTED"})
INTERRUPTED_STATES: Final = frozenset({"INPUT_REQUIRED", "AUTH_REQUIRED"})
FINAL_STATES: Final = TERMINAL_STATES | INTERRUPTED_STATES

#: Mesh status → A2A state.
STATE_OF_STATUS: Final = {
    "pending": "SUBMITTED",
    "running": "WORKING",
    "paused": "INPUT_REQUIRED",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "canceled": "CANCELED",
}


def state_name(state: str, version: Version) -> str:
    """`WORKING` → `TASK_STATE_WORKING` (1.0) or `working` (0.3)."""
    if version == "1.0":
        return f"TASK_STATE_{state}"
    return "unknown" if state == "UNSPECIFIED" else state.lower().replace("_", "-")


class Status(msgspec.Struct, kw_only=True, frozen=True):
    state: str
    message: dict[str, Any] | None = None
    timestamp: str = ""


class Artifact(msgspec.Struct, kw_only=True):
    artifact_id: str
    parts: list[dict[str, Any]]
    name: str = ""
    description: str = ""
    metadata: dict[str, Any] | None = None


class A2AStatusUpdate(msgspec.Struct, kw_only=True, frozen=True):
    task_id: str
    context_id: str
    status: Status
    metadata: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status.state in FINAL_STATES


class A2AArtifactUpdate(msgspec.Struct, kw_only=True, frozen=True):
    task_id: str
    context_id: str
    artifact: Artifact
    append: bool = False
    last_chunk: bool = False


class TaskSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    context_id: str
    status: Status
    artifacts: list[Artifact] = []
    history: list[dict[str, Any]] = []
    metadata: dict[str, Any] | None = None


A2AEvent = A2AStatusUpdate | A2AArtifactUpdate | TaskSnapshot


# -- v1.0 -------------------------------------------------------------------------------------


def _v1_message(m: dict[str, Any]) -> dict[str, Any]:
    out = dict(m)
    out["role"] = "ROLE_AGENT" if m.get("role") == "agent" else "ROLE_USER"
    return out


def _v1_status(s: Status) -> dict[str, Any]:
    out: dict[str, Any] = {"state": state_name(s.state, "1.0")}
    if s.message is not None:
        out["message"] = _v1_message(s.message)
    if s.timestamp:
        out["timestamp"] = s.timestamp
    return out


def _artifact(a: Artifact, parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"artifactId": a.artifact_id, "parts": parts}
    if a.name:
        out["name"] = a.name
    if a.description:
        out["description"] = a.description
    if a.metadata:
        out["metadata"] = a.metadata
    return out


def _v1_task(t: TaskSnapshot) -> dict[str, Any]:
    out: dict[str, Any] = {"id": t.id, "contextId": t.context_id, "status": _v1_status(t.status)}
    if t.artifacts:
        out["artifacts"] = [_artifact(a, a.parts) for a in t.artifacts]
    if t.history:
        out["history"] = [_v1_message(m) for m in t.history]
    if t.metadata:
        out["metadata"] = t.metadata
    return out


def render_v1(event: A2AEvent) -> dict[str, Any]:
    """A v1.0 `StreamResponse` (the `result` of one SSE event): exactly one member set."""
    if isinstance(event, TaskSnapshot):
        return {"task": _v1_task(event)}
    if isinstance(event, A2AStatusUpdate):
        body: dict[str, Any] = {
            "taskId": event.task_id,
            "contextId": event.context_id,
            "status": _v1_status(event.status),
        }
        if event.metadata:
            body["metadata"] = event.metadata
        return {"statusUpdate": body}
    return {
        "artifactUpdate": {
            "taskId": event.task_id,
            "contextId": event.context_id,
            "artifact": _artifact(event.artifact, event.artifact.parts),
            "append": event.append,
            "lastChunk": event.last_chunk,
        }
    }


def render_task_v1(t: TaskSnapshot) -> dict[str, Any]:
    """A v1.0 `Task` (GetTask, CancelTask, a blocking SendMessage's `{"task": ...}`)."""
    return _v1_task(t)


# -- v0.3 -------------------------------------------------------------------------------------


def part_v03(p: dict[str, Any]) -> dict[str, Any]:
    """A v1.0 part in v0.3 shape (`kind`; `file` for url/raw; non-object data wrapped)."""
    meta = p.get("metadata")
    out: dict[str, Any]
    if "text" in p:
        out = {"kind": "text", "text": p["text"]}
    elif "data" in p:
        data = p["data"]
        if not isinstance(data, dict):  # v0.3 data parts hold objects: wrap as the SDK does
            data = {"value": data}
            meta = {**(meta or {}), "data_part_compat": True}
        out = {"kind": "data", "data": data}
    else:
        file: dict[str, Any] = {"uri": p["url"]} if "url" in p else {"bytes": p.get("raw", "")}
        if p.get("filename"):
            file["name"] = p["filename"]
        if p.get("mediaType"):
            file["mimeType"] = p["mediaType"]
        out = {"kind": "file", "file": file}
    if meta:
        out["metadata"] = meta
    return out


def _v03_message(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k != "parts"}
    out["role"] = "agent" if m.get("role") == "agent" else "user"
    out["parts"] = [part_v03(p) for p in m.get("parts", [])]
    out["kind"] = "message"
    return out


def _v03_status(s: Status) -> dict[str, Any]:
    out: dict[str, Any] = {"state": state_name(s.state, "0.3")}
    if s.message is not None:
        out["message"] = _v03_message(s.message)
    if s.timestamp:
        out["timestamp"] = s.timestamp
    return out


def _v03_task(t: TaskSnapshot) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "task",
        "id": t.id,
        "contextId": t.context_id,
        "status": _v03_status(t.status),
    }
    if t.artifacts:
        out["artifacts"] = [_artifact(a, [part_v03(p) for p in a.parts]) for a in t.artifacts]
    if t.history:
        out["history"] = [_v03_message(m) for m in t.history]
    if t.metadata:
        out["metadata"] = t.metadata
    return out


def render_v03(event: A2AEvent) -> dict[str, Any]:
    """A v0.3 stream event (`Task`, `TaskStatusUpdateEvent`, `TaskArtifactUpdateEvent`)."""
    if isinstance(event, TaskSnapshot):
        return _v03_task(event)
    if isinstance(event, A2AStatusUpdate):
        out: dict[str, Any] = {
            "kind": "status-update",
            "taskId": event.task_id,
            "contextId": event.context_id,
            "status": _v03_status(event.status),
            "final": event.final,
        }
        if event.metadata:
            out["metadata"] = event.metadata
        return out
    a = event.artifact
    return {
        "kind": "artifact-update",
        "taskId": event.task_id,
        "contextId": event.context_id,
        "artifact": _artifact(a, [part_v03(p) for p in a.parts]),
        "append": event.append,
        "lastChunk": event.last_chunk,
    }


def render_task_v03(t: TaskSnapshot) -> dict[str, Any]:
    return _v03_task(t)


def render(event: A2AEvent, version: Version) -> dict[str, Any]:
    return render_v1(event) if version == "1.0" else render_v03(event)


def render_task(t: TaskSnapshot, version: Version) -> dict[str, Any]:
    return _v1_task(t) if version == "1.0" else _v03_task(t)


__all__ = [
    "FINAL_STATES",
    "INTERRUPTED_STATES",
    "STATE_OF_STATUS",
    "TERMINAL_STATES",
    "A2AArtifactUpdate",
    "A2AEvent",
    "A2AStatusUpdate",
    "Artifact",
    "Status",
    "TaskSnapshot",
    "Version",
    "part_v03",
    "render",
    "render_task",
    "render_task_v03",
    "render_task_v1",
    "render_v03",
    "render_v1",
    "state_name",
]
