"""Ingest: what sidecars POST, parsed into the typed `asya_mesh.events` Structs.

Pure: bytes in (one task's events; many tasks' in one batch: `parse_task_events`),
`FlyEvent` / `StatusEvent` out, or `BadEvent` whose message names the problem (and where:
`$[1].status`). Knows nothing about HTTP, tasks, SSE or the store.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from asya_mesh.events import Event, FlyEvent, StatusData, StatusEvent

#: Statuses a sidecar may report (upstream's three progress states, pause, and the terminals),
#: plus the gateway's own phases (a peer gateway may relay them).
SIDECAR_STATUSES: Final = frozenset(
    {"received", "processing", "completed", "pending", "running", "paused"}
    | {"succeeded", "failed", "canceled"}
)


class BadEvent(ValueError):
    """A request body that is not a valid event; the message names the problem."""


class _Loose(msgspec.Struct, kw_only=True):
    """First pass: the tag and the raw `data`, so that errors name the field we care about
    (a FLY's `data` must be an object; a status needs `status`) before the typed decode."""

    type: str
    status: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    seq: int | None = None
    n: int = 1


class _Tagged(_Loose, kw_only=True):
    """One event of a many-task batch (`POST /api/v1/mesh/events`): the event plus its task."""

    id: str


class ProgressUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """Upstream's legacy `POST /mesh/{id}/progress` body (digest §4.10)."""

    status: str
    prev: list[str] = []
    curr: str = ""
    next: list[str] = []
    actor: str | None = None
    message: str | None = None
    duration_ms: float | None = None


_loose: Final = msgspec.json.Decoder(_Loose | list[_Loose])
_tagged: Final = msgspec.json.Decoder(list[_Tagged])
_progress: Final = msgspec.json.Decoder(ProgressUpdate)
_status_data: Final = msgspec.json.Decoder(StatusData)
_any: Final = msgspec.json.Decoder()


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, where: str = "") -> Any:
    if not body.strip():
        raise BadEvent("empty body: expected a JSON event object")
    try:
        return decoder.decode(body)
    except RecursionError:
        # msgspec stops at its own depth limit; that is our "deeply nested JSON" guard.
        raise BadEvent("JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`$", f"`{where}") if where else str(exc)
        raise BadEvent(f"invalid event: {text}") from None
    except msgspec.DecodeError as exc:
        raise BadEvent(f"malformed JSON: {exc}") from None


def _status(status: str | None, data: bytes, where: str) -> StatusEvent:
    if status is None:
        raise BadEvent(f"status event without `status` - at `{where}`")
    if status not in SIDECAR_STATUSES:
        raise BadEvent(f"unknown status {status!r} - at `{where}.status`")
    if data.strip() == b"null":
        return StatusEvent(status=status)
    if not data.lstrip().startswith(b"{"):
        raise BadEvent(f"status `data` must be an object - at `{where}.data`")
    return StatusEvent(status=status, data=_decode(_status_data, data, f"{where}.data"))


def _fly(raw: bytes, where: str, seq: int | None = None, n: int = 1) -> FlyEvent:
    # Syntax and depth were checked when the enclosing body was decoded (`Raw` spans are
    # validated, never re-parsed): the hot path pays one decode per request, not per FLY.
    if not raw.lstrip().startswith(b"{"):
        raise BadEvent(f"FLY `data` must be an object - at `{where}.data`")
    if n < 1 or (seq is not None and seq < 0):
        raise BadEvent(f"FLY `seq` must be >= 0 and `n` >= 1 - at `{where}`")
    return FlyEvent(data=msgspec.Raw(raw.strip()), seq=seq, n=n)


def _convert(obj: _Loose, where: str) -> Event:
    if obj.type == "status":
        return _status(obj.status, bytes(obj.data), where)
    if obj.type == "fly":
        return _fly(bytes(obj.data), where, obj.seq, obj.n)
    raise BadEvent(f"invalid event: Invalid value {obj.type!r} - at `{where}.type`")


def parse_events(body: bytes) -> list[Event]:
    """Parse one event object or a JSON array of them; raises `BadEvent` naming the problem."""
    decoded = _decode(_loose, body)
    if isinstance(decoded, _Loose):
        return [_convert(decoded, "$")]
    return [_convert(ev, f"$[{i}]") for i, ev in enumerate(decoded)]


def parse_task_events(body: bytes) -> list[tuple[str, list[Event]]]:
    """Parse a many-task batch: a JSON array of events each carrying its task's `id`.

    Returns runs of consecutive events of one task, in body order (so each task's events stay
    in order); raises `BadEvent` naming the problem."""
    runs: list[tuple[str, list[Event]]] = []
    for i, obj in enumerate(_decode(_tagged, body)):
        if not obj.id:
            raise BadEvent(f"event without a task `id` - at `$[{i}].id`")
        ev = _convert(obj, f"$[{i}]")
        if runs and runs[-1][0] == obj.id:
            runs[-1][1].append(ev)
        else:
            runs.append((obj.id, [ev]))
    return runs


def parse_legacy_fly(body: bytes) -> FlyEvent:
    """Legacy `POST /mesh/{id}/fly`: the bare FLY dict."""
    _decode(_any, body)  # well-formed JSON, or a 400 naming why
    return _fly(body.strip(), "$")


def parse_legacy_progress(body: bytes) -> StatusEvent:
    """Legacy `POST /mesh/{id}/progress`: a ProgressUpdate, as a status event."""
    p = _decode(_progress, body)
    data = StatusData(
        prev=p.prev,
        curr=p.curr,
        next=p.next,
        actor=p.actor,
        duration_ms=None if p.duration_ms is None else int(p.duration_ms),
    )
    return _status(p.status, msgspec.json.encode(data), "$")


def parse_legacy_final(body: bytes) -> StatusEvent:
    """Legacy `POST /mesh/{id}/final`: `{status, result?, error?, ...}`, as a status event."""
    data: StatusData = _decode(_status_data, body)
    return _status(data.status, body.strip(), "$")


__all__ = [
    "SIDECAR_STATUSES",
    "BadEvent",
    "ProgressUpdate",
    "parse_events",
    "parse_legacy_final",
    "parse_legacy_fly",
    "parse_legacy_progress",
    "parse_task_events",
]
