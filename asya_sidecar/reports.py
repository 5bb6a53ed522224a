"""What the sidecar tells the gateway, as `asya_mesh.events` Structs, and which gateway it tells.

Pure: the one place the status object (progress data, the end actors' terminal data) is built,
FLY events, the legacy bodies, the SSRF guard on `x-asya-gateway-url`. No HTTP here
(`gateway.py` POSTs), no clock (`now` is a parameter).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from asya_mesh.events import Event, EventStatus, FlyEvent, ProgressState, StatusData, StatusEvent
from asya_runtime.wire import Envelope

from .routing import FAN_IN, GATEWAY_URL, MESH_STATUS, fly_count

_json: Final = msgspec.json.Encoder()


def safe_gateway_url(value: Any) -> str | None:
    """The SSRF guard on `x-asya-gateway-url`: http/https with a non-empty host only."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return value.rstrip("/")


def resolve_gateway(headers: dict[str, Any], default: str | None) -> tuple[str | None, bool]:
    """(the gateway for an envelope, whether an unsafe header was ignored): the header if
    safe, else `default`; None when reporting is off (`x-asya-mesh-status: off`)."""
    if str(headers.get(MESH_STATUS, "")).lower() == "off":
        return None, False
    raw = headers.get(GATEWAY_URL)
    if raw:
        url = safe_gateway_url(raw)
        if url is not None:
            return url, False
        return default, True
    return default, False


def status_event(state: EventStatus, **data: Any) -> StatusEvent:
    """The one constructor of a status event and its data object."""
    return StatusEvent(status=state, data=StatusData(**data))


def progress(
    state: ProgressState, env: Envelope, actor: str, duration_ms: int | None = None
) -> StatusEvent:
    """`received` / `processing` / `completed`: `{prev, curr, next, actor, duration_ms?}`."""
    r = env.route
    return status_event(
        state,
        prev=list(r.prev),
        curr=r.curr,
        next=list(r.next),
        actor=actor,
        duration_ms=duration_ms,
    )


def fly(data: dict[str, Any], seq: int | None) -> FlyEvent:
    return FlyEvent(data=msgspec.Raw(_json.encode(data)), seq=seq)


def _timestamp(now: float) -> str:
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def terminal(env: Envelope, *, is_sump: bool, now: float) -> StatusEvent | None:
    """What an end actor reports for an envelope arriving at its queue (upstream's shapes,
    plus `flies`: the task's FLY count), or None (fan-out child, fan-in, canceled/paused)."""
    if env.parent_id or env.headers.get(FAN_IN) or not env.id:
        return None
    phase = env.status.get("phase")
    if not is_sump and phase not in ("succeeded", "failed", None):
        return None  # canceled / paused: the gateway already knows (it said so in pre-flight)
    failed = is_sump or phase == "failed"
    ts = _timestamp(now)
    flies = fly_count(env.headers)
    if not failed:
        return status_event(
            "succeeded",
            id=env.id,
            status="succeeded",
            timestamp=ts,
            progress=1.0,
            result=env.payload,
            flies=flies,
        )
    payload = env.payload if isinstance(env.payload, dict) else {}
    err = env.status.get("error")
    if isinstance(err, dict) and err.get("message"):
        message, details = str(err["message"]), err
    else:
        message = str(payload.get("error") or "unknown error")
        details = payload.get("details") or {}
    r = env.route
    return status_event(
        "failed",
        id=env.id,
        status="failed",
        timestamp=ts,
        error=message,
        error_details=details,
        prev=list(r.prev),
        curr=r.curr,
        next=list(r.next),
        current_actor_idx=len(r.prev),
        current_actor_name=r.curr,
        flies=flies,
    )


def legacy(gw: str, envelope_id: str, ev: Event) -> tuple[str, bytes]:
    """Upstream's legacy call for one event: `/mesh/{id}/fly` (the bare FLY dict) or
    `/mesh/{id}/progress` (`{status, prev, curr, ...}`)."""
    if isinstance(ev, FlyEvent):
        return f"{gw}/mesh/{envelope_id}/fly", bytes(ev.data)
    body = {"status": ev.status, **msgspec.to_builtins(ev.data)}
    return f"{gw}/mesh/{envelope_id}/progress", _json.encode(body)


def fly_total(events: list[Event]) -> int:
    """How many FLYs `events` stand for."""
    return sum(e.n for e in events if isinstance(e, FlyEvent))


__all__ = [
    "fly",
    "fly_total",
    "legacy",
    "progress",
    "resolve_gateway",
    "safe_gateway_url",
    "status_event",
    "terminal",
]
