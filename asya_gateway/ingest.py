"""Ingest: what sidecars POST, parsed into the typed `asya_mesh.events` Structs.

Pure: bytes in (one task's events; many tasks' in one batch: `parse_task_events`),
`FlyEvent` / `StatusEvent` out, or `BadEvent` whose message names the problem (and where:
`$[1].status`). Knows nothing about HTTP, tasks, SSE or the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, cast

import msgspec

from asya_mesh.events import EVENT_STATUSES, Event, EventStatus, FlyEvent, StatusData, StatusEvent


class BadEvent(ValueError):
    """A request body that is not a valid event; the message names the problem."""


class _TaskId(msgspec.Struct):
    """What a many-task batch adds to each event (`POST /api/v1/mesh/events`): its task."""

    id: str


class ProgressUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """Upstream's legacy `POST /mesh/{id}/progress` body (digest §4.10)."""

    status: EventStatus
    prev: list[str] = []
    curr: str = ""
    next: list[str] = []
    actor: str | None = None
    message: str | None = None
    duration_ms: float | None = None


_events: Final = msgspec.json.Decoder(Event | list[Event])
_task_events: Final = msgspec.json.Decoder(list[Event])
_task_ids: Final = msgspec.json.Decoder(list[_TaskId])
_progress: Final = msgspec.json.Decoder(ProgressUpdate)
_status_data: Final = msgspec.json.Decoder(StatusData)
_any: Final = msgspec.json.Decoder()

# msgspec's messages name the path; these say what is wrong in the gateway's terms (clients
# and tests know them). Each applies only where its field is: `at` (msgspec's path, `$` when
# it names none) must end with the suffix.
_AT: Final = r"(?: - at `(?P<at>[^`]*)`)?$"
_Say = Callable[[re.Match[str], str], str]
_REWORDED: Final[tuple[tuple[re.Pattern[str], str, _Say], ...]] = (
    (
        re.compile(r"^Invalid enum value (?P<v>.*?)" + _AT),
        ".status",
        lambda m, at: f"unknown status {m['v']} - at `{at}`",
    ),
    (
        re.compile(r"^Object missing required field `status`" + _AT),
        "",
        lambda m, at: f"status event without `status` - at `{at}`",
    ),
    (  # only a FLY requires `data`
        re.compile(r"^Object missing required field `data`" + _AT),
        "",
        lambda m, at: f"FLY `data` must be an object - at `{at}.data`",
    ),
    (
        re.compile(r"^Expected `object`, got `\w+`" + _AT),
        ".data",
        lambda m, at: f"status `data` must be an object - at `{at}`",
    ),
)
_NULL_DATA: Final = re.compile(r"^Expected `object`, got `null` - at `[^`]*\.data`$")


def _reworded(text: str) -> str:
    for pattern, suffix, say in _REWORDED:
        m = pattern.match(text)
        at = (m["at"] or "$") if m is not None else ""
        if m is not None and at.endswith(suffix):
            return say(m, at)
    return f"invalid event: {text}"


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    if not body.strip():
        raise BadEvent("empty body: expected a JSON event object")
    try:
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            if not _NULL_DATA.match(str(exc)):
                raise
        return decoder.decode(_without_null_data(body))
    except RecursionError:
        # msgspec stops at its own depth limit; that is our "deeply nested JSON" guard.
        raise BadEvent("JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise BadEvent(_reworded(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadEvent(f"malformed JSON: {exc}") from None


def _without_null_data(body: bytes) -> bytes:
    """The body with `"data": null` dropped from its status events.

    The one untagged-shape leniency: the gateway has always read a status's `"data": null` as
    no data (upstream's `data` is optional), while the shared `StatusEvent.data` is an object.
    Reached only when the typed decode failed on exactly that, so the hot path never pays."""
    obj = _any.decode(body)
    for ev in obj if isinstance(obj, list) else [obj]:
        if isinstance(ev, dict) and ev.get("type") == "status" and ev.get("data", 0) is None:
            del ev["data"]
    return msgspec.json.encode(obj)


def _checked(ev: FlyEvent, index: int | None) -> FlyEvent:
    """What the Struct's types do not say: `data` is an object, `seq` / `n` in range. `data`
    is copied out of the request body, which it would otherwise keep alive. `index`: where
    in an array the event is (None: the body is the event); named only in an error."""
    head = memoryview(ev.data)
    if not head or head[0] != 0x7B:  # b"{"
        raise BadEvent(f"FLY `data` must be an object - at `{_at(index)}.data`")
    if ev.n < 1 or (ev.seq is not None and ev.seq < 0):
        raise BadEvent(f"FLY `seq` must be >= 0 and `n` >= 1 - at `{_at(index)}`")
    ev.data = ev.data.copy()
    return ev


def _at(index: int | None) -> str:
    return "$" if index is None else f"$[{index}]"


def parse_events(body: bytes) -> list[Event]:
    """Parse one event object or a JSON array of them; raises `BadEvent` naming the problem."""
    decoded: Event | list[Event] = _decode(_events, body)
    if not isinstance(decoded, list):
        return [_checked(decoded, None) if isinstance(decoded, FlyEvent) else decoded]
    for i, ev in enumerate(decoded):
        if isinstance(ev, FlyEvent):
            _checked(ev, i)
    return decoded


def parse_task_events(body: bytes) -> list[tuple[str, list[Event]]]:
    """Parse a many-task batch: a JSON array of events each carrying its task's `id`.

    Returns runs of consecutive events of one task, in body order (so each task's events stay
    in order); raises `BadEvent` naming the problem."""
    # Two passes over one body (the ids, then the shared event Structs, which ignore `id`)
    # rather than a second, id-carrying copy of each event Struct.
    ids = _decode(_task_ids, body)
    events = _decode(_task_events, body)
    runs: list[tuple[str, list[Event]]] = []
    for i, (obj, ev) in enumerate(zip(ids, events, strict=True)):
        if not obj.id:
            raise BadEvent(f"event without a task `id` - at `$[{i}].id`")
        if isinstance(ev, FlyEvent):
            _checked(ev, i)
        if runs and runs[-1][0] == obj.id:
            runs[-1][1].append(ev)
        else:
            runs.append((obj.id, [ev]))
    return runs


def parse_legacy_fly(body: bytes) -> FlyEvent:
    """Legacy `POST /mesh/{id}/fly`: the bare FLY dict."""
    _decode(_any, body)  # well-formed JSON, or a 400 naming why
    return _checked(FlyEvent(data=msgspec.Raw(body.strip())), None)


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
    return StatusEvent(status=p.status, data=data)


def parse_legacy_final(body: bytes) -> StatusEvent:
    """Legacy `POST /mesh/{id}/final`: `{status, result?, error?, ...}`, as a status event."""
    data: StatusData = _decode(_status_data, body)
    if data.status is None:
        raise BadEvent("status event without `status` - at `$`")
    if data.status not in EVENT_STATUSES:
        raise BadEvent(f"unknown status {data.status!r} - at `$.status`")
    return StatusEvent(status=cast(EventStatus, data.status), data=data)


__all__ = [
    "BadEvent",
    "ProgressUpdate",
    "parse_events",
    "parse_legacy_final",
    "parse_legacy_fly",
    "parse_legacy_progress",
    "parse_task_events",
]
