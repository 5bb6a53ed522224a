"""Gateway events: parsing what sidecars POST, and encoding what clients read over SSE.

Pure functions and msgspec Structs only. This module knows nothing about HTTP, tasks or
subscribers: bytes in, typed events out; typed events in, SSE bytes out.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

#: Statuses a sidecar may report (upstream's three progress states, pause, and the terminals),
#: plus the gateway's own phases (a peer gateway may relay them).
SIDECAR_STATUSES: Final = frozenset(
    {"received", "processing", "completed", "pending", "running", "paused"}
    | {"succeeded", "failed", "canceled"}
)

#: FLY dicts whose single top-level key is one of these get that key as SSE event name.
A2A_EVENT_KEYS: Final = frozenset({"artifact_update", "status_update", "message"})


class BadEvent(ValueError):
    """A request body that is not a valid event; the message names the problem."""


class _EventObj(msgspec.Struct, kw_only=True, frozen=True):
    """One event object of `POST /api/v1/mesh/{id}/events` as it arrives (sidecar-gateway.md)."""

    type: Literal["fly", "status"]
    status: str | None = None
    # Raw: a FLY's bytes are spliced into the SSE stream as they came, never re-encoded.
    data: msgspec.Raw = msgspec.Raw(b"null")


class FlyIn(msgspec.Struct, frozen=True):
    """A FLY to fan out: its JSON object bytes and its SSE event name."""

    data: bytes
    name: str = "partial"


class StatusIn(msgspec.Struct, frozen=True):
    """A status report: the sidecar's state and its `data` object."""

    status: str
    data: dict[str, Any]


Event = FlyIn | StatusIn


class ProgressUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """Upstream's legacy `POST /mesh/{id}/progress` body (digest §4.10)."""

    status: str
    prev: list[str] = []
    curr: str = ""
    next: list[str] = []
    actor: str | None = None
    message: str | None = None
    duration_ms: float | None = None


class _FinalReport(msgspec.Struct, kw_only=True, frozen=True):
    """Upstream's legacy `POST /mesh/{id}/final` body: `{status, result?, error?, ...}`."""

    status: str


_single_or_batch: Final = msgspec.json.Decoder(_EventObj | list[_EventObj])
_progress: Final = msgspec.json.Decoder(ProgressUpdate)
_final: Final = msgspec.json.Decoder(_FinalReport)
_any: Final = msgspec.json.Decoder()


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    if not body.strip():
        raise BadEvent("empty body: expected a JSON event object")
    try:
        return decoder.decode(body)
    except RecursionError:
        # msgspec stops at its own depth limit; that is our "deeply nested JSON" guard.
        raise BadEvent("JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise BadEvent(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadEvent(f"malformed JSON: {exc}") from None


def _status(status: str | None, data: Any, where: str) -> StatusIn:
    if status is None:
        raise BadEvent(f"status event without `status` - at `{where}`")
    if status not in SIDECAR_STATUSES:
        raise BadEvent(f"unknown status {status!r} - at `{where}.status`")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadEvent(f"status `data` must be an object - at `{where}.data`")
    return StatusIn(status, data)


def _fly(raw: bytes, where: str) -> FlyIn:
    if not raw.lstrip().startswith(b"{"):
        raise BadEvent(f"FLY `data` must be an object - at `{where}.data`")
    # Only decode (slow path) when an A2A key could be the one top-level key.
    if any(k in raw for k in _A2A_NEEDLES):
        return FlyIn(raw, fly_event_name(_decode(_any, raw)))
    return FlyIn(raw)


_A2A_NEEDLES: Final = tuple(b'"%s"' % k.encode() for k in sorted(A2A_EVENT_KEYS))


def _convert(obj: _EventObj, where: str) -> Event:
    if obj.type == "status":
        return _status(obj.status, _decode(_any, bytes(obj.data)), where)
    return _fly(bytes(obj.data), where)


def parse_events(body: bytes) -> list[Event]:
    """Parse one event object or a JSON array of them; raises `BadEvent` naming the problem."""
    decoded = _decode(_single_or_batch, body)
    if isinstance(decoded, _EventObj):
        return [_convert(decoded, "$")]
    return [_convert(ev, f"$[{i}]") for i, ev in enumerate(decoded)]


def parse_legacy_fly(body: bytes) -> FlyIn:
    """Legacy `POST /mesh/{id}/fly`: the bare FLY dict."""
    _decode(_any, body)  # well-formed JSON, or a 400 naming why
    return _fly(body.strip(), "$")


def parse_legacy_progress(body: bytes) -> StatusIn:
    """Legacy `POST /mesh/{id}/progress`: a ProgressUpdate, as a status event."""
    p = _decode(_progress, body)
    data = {k: v for k, v in msgspec.structs.asdict(p).items() if v is not None}
    del data["status"]
    return _status(p.status, data, "$")


def parse_legacy_final(body: bytes) -> StatusIn:
    """Legacy `POST /mesh/{id}/final`: the terminal report, as a status event."""
    f = _decode(_final, body)
    return _status(f.status, _decode(_any, body), "$")


def fly_event_name(fly: dict[str, Any]) -> str:
    """SSE event name of a FLY: `partial`, or its one A2A top-level key."""
    if len(fly) == 1:
        (key,) = fly
        if key in A2A_EVENT_KEYS:
            return str(key)
    return "partial"


def encode_sse(event: str | None, data: bytes, event_id: int | None = None) -> bytes:
    """One SSE event: `id:`, `event:`, one `data:` line per line of `data`, blank line."""
    parts: list[bytes] = []
    if event_id is not None:
        parts.append(b"id: %d\n" % event_id)
    if event:
        if "\n" in event or "\r" in event:
            raise ValueError("SSE event name must be a single line")
        parts.append(b"event: " + event.encode() + b"\n")
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def encode_comment(text: str) -> bytes:
    """An SSE comment (ignored by clients; keeps proxies and idle timers happy)."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"


__all__ = [
    "BadEvent",
    "Event",
    "FlyIn",
    "StatusIn",
    "encode_comment",
    "encode_sse",
    "fly_event_name",
    "parse_events",
    "parse_legacy_final",
    "parse_legacy_fly",
    "parse_legacy_progress",
]
