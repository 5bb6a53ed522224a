"""A task's durable state (`TaskRecord`) and the pure transitions on it.

Pure: a record and an event (or a decision: cancel, deadline, resume) in, the new record out,
or None when the event is stale (status is monotonic). The store persists records; the live
fan-out publishes what changed. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from asya_mesh.events import StatusEvent

from .service import TERMINAL_STATUSES, TaskView

#: Status rank: a report of lower rank than the current status is stale and ignored.
RANK: Final = {"pending": 0, "running": 1, "paused": 2, "succeeded": 3, "failed": 3, "canceled": 3}
TERMINAL: Final = TERMINAL_STATUSES
#: The sidecar's progress states fold into `running` (as upstream's mesh-api does).
_PHASE_OF: Final = {"received": "running", "processing": "running", "completed": "running"}
#: Upstream's progress weights per state (digest §4.10).
_WEIGHT: Final = {"received": 0.1, "processing": 0.5, "completed": 1.0}


class TaskRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything the gateway keeps about a task (FLYs excepted: they are never stored)."""

    id: str
    route: list[str]
    created_at: float
    updated_at: float
    status: str = "pending"
    state: str = "pending"  # the last raw state reported (received/processing/...)
    actor: str | None = None
    progress: float = 0.0
    message: str | None = None
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET
    deadline_at: float | None = None
    flow: str | None = None
    payload: Any = msgspec.UNSET
    pause: dict[str, Any] | None = None
    envelope: Any = msgspec.UNSET  # the paused envelope, until resumed
    owner: str | None = None
    flies: int | None = None  # the terminal report's FLY count

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def rfc3339(ts: float) -> str:
    """RFC 3339, UTC, with milliseconds (a 2 s deadline is not cut to 1)."""
    # isoformat is twice as fast as strftime (this runs for every published change)
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def progress_fraction(state: str, prev: list[str], curr: str, nxt: list[str], actor: str) -> float:
    """Upstream's `(len(prev) + weight) / total` for a progress report (-1: not one).

    `actor` locates the reporting actor in the route, so the `completed` report (which carries
    the *output* route, already shifted past the actor) lands on the same step.
    """
    weight = _WEIGHT.get(state)
    route = [*prev, *([curr] if curr else []), *nxt]
    if weight is None or not route:
        return -1.0
    actor = actor or curr
    if actor == curr:
        idx = len(prev)
    elif actor in prev:
        idx = len(prev) - 1 - prev[::-1].index(actor)
    else:
        idx = len(prev)
    return min(1.0, (idx + weight) / len(route))


def apply_status(rec: TaskRecord, *, event: StatusEvent, now: float) -> TaskRecord | None:
    """The record after a sidecar's status report, or None if the report is stale."""
    phase = _PHASE_OF.get(event.status, event.status)
    if rec.terminal or RANK.get(phase, -1) < RANK[rec.status]:
        return None
    data = event.data
    new = msgspec.structs.replace(rec, status=phase, state=event.status, updated_at=now)
    actor = data.actor or data.current_actor_name or data.curr
    if actor:
        new.actor = actor
    if data.curr is not None or data.prev or data.next:
        fraction = progress_fraction(
            event.status, data.prev, data.curr or "", data.next, data.actor or ""
        )
        new.progress = max(rec.progress, fraction)  # progress never goes backwards
    if phase == "succeeded":
        new.progress = 1.0
        new.result = None if data.result is msgspec.UNSET else data.result
        new.flies = data.flies
    elif phase == "failed":
        details = data.error_details
        new.error = data.error or (details if details is not msgspec.UNSET else None) or "failed"
        if details is not msgspec.UNSET and details is not None:
            new.message = str(details)
        new.flies = data.flies
    elif phase == "paused":
        new.pause = data.pause if isinstance(data.pause, dict) else {}
        if data.envelope is not msgspec.UNSET:
            new.envelope = data.envelope
        new.flies = data.flies
    return new


def apply_statuses(rec: TaskRecord, statuses: list[StatusEvent], now: float) -> list[TaskRecord]:
    """Every record `statuses` take `rec` through, in order (stale reports make none)."""
    steps: list[TaskRecord] = []
    for event in statuses:
        new = apply_status(rec, event=event, now=now)
        if new is not None:
            rec = new
            steps.append(new)
    return steps


def cancel(rec: TaskRecord, now: float) -> TaskRecord | None:
    """Canceled by a client; None if already terminal."""
    if rec.terminal:
        return None
    return msgspec.structs.replace(
        rec, status="canceled", state="canceled", updated_at=now, envelope=msgspec.UNSET
    )


def fail(rec: TaskRecord, now: float, error: Any, message: str | None = None) -> TaskRecord | None:
    """Failed by the gateway itself (deadline, enqueue failure); None if already terminal."""
    if rec.terminal:
        return None
    return msgspec.structs.replace(
        rec,
        status="failed",
        state="failed",
        updated_at=now,
        error=error,
        message=message,
        envelope=msgspec.UNSET,
    )


def timed_out(rec: TaskRecord, now: float) -> TaskRecord | None:
    """The deadline passed before a terminal status; None if nothing to do."""
    if rec.terminal or rec.deadline_at is None or now < rec.deadline_at:
        return None
    message = f"task deadline {rec_deadline(rec)} passed before it finished"
    return fail(rec, now, {"type": "Timeout", "message": message}, message)


def rec_deadline(rec: TaskRecord) -> str:
    return rfc3339(rec.deadline_at) if rec.deadline_at is not None else ""


def resumed(rec: TaskRecord, now: float) -> TaskRecord | None:
    """Back to running after a resume; None if it is not paused."""
    if rec.status != "paused":
        return None
    return msgspec.structs.replace(
        rec,
        status="running",
        state="resumed",
        updated_at=now,
        pause=None,
        envelope=msgspec.UNSET,
        flies=None,
    )


def view(rec: TaskRecord) -> TaskView:
    """The client's view of a record (the JSON of `GET /api/v1/mesh/{id}`)."""
    return TaskView(
        id=rec.id,
        status=rec.status,
        progress=round(rec.progress, 4),
        route=rec.route,
        actor=rec.actor,
        created_at=rfc3339(rec.created_at),
        updated_at=rfc3339(rec.updated_at),
        flow=rec.flow,
        message=rec.message,
        result=rec.result,
        error=rec.error,
        pause=rec.pause if rec.status == "paused" else None,
        payload=rec.payload,
    )


def view_json(rec: TaskRecord) -> dict[str, Any]:
    """`GET /api/v1/mesh/{id}`: the view without the payload, plus `deadline_at`."""
    out: dict[str, Any] = msgspec.to_builtins(view(rec))
    out.pop("payload", None)
    out.setdefault("progress", 0.0)
    if rec.deadline_at is not None:
        out["deadline_at"] = rfc3339(rec.deadline_at)
    return out


def update_data(rec: TaskRecord) -> dict[str, Any]:
    """The `data` of an `update` SSE event."""
    out: dict[str, Any] = {
        "id": rec.id,
        "status": rec.status,
        "state": rec.state,
        "progress_percent": round(rec.progress * 100, 2),
        "actor": rec.actor,
        "timestamp": rfc3339(rec.updated_at),
    }
    if rec.message is not None:
        out["message"] = rec.message
    if rec.result is not msgspec.UNSET:
        out["result"] = rec.result
    if rec.error is not msgspec.UNSET:
        out["error"] = rec.error
    if rec.status == "paused" and rec.pause is not None:
        out["pause"] = rec.pause
    return out


__all__ = [
    "RANK",
    "TERMINAL",
    "TaskRecord",
    "apply_status",
    "apply_statuses",
    "cancel",
    "fail",
    "progress_fraction",
    "resumed",
    "rfc3339",
    "timed_out",
    "update_data",
    "view",
    "view_json",
]
