"""Sidecar → gateway events: the body of `POST /api/v1/mesh/{id}/events`, typed once for both ends.

The sidecar encodes these Structs; the gateway decodes the same Structs (a JSON object or an
array of them, sidecar-gateway.md "Gateway calls"). Unknown keys are ignored, so upstream's
sidecars and newer ones interoperate. Nothing here does I/O.

Ordering by counting (no clocks): every FLY a task's sidecars send gets `seq`, its position among
all of that task's FLYs across hops (the envelope carries the running count in the
`x-asya-fly-count` header, see `FLY_COUNT_HEADER`); the end actor's terminal status carries
`flies`, the total. The gateway publishes FLYs in `seq` order and the terminal status once it
has seen `flies` of them, or a bound passes.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgspec

#: Envelope header: how many FLYs the task's sidecars have sent so far (all hops before this one).
FLY_COUNT_HEADER: Final = "x-asya-fly-count"

#: What a sidecar reports: upstream's three progress states, then the end actors' terminals.
ProgressState = Literal["received", "processing", "completed"]
TerminalState = Literal["succeeded", "failed"]
#: Every status a status event may carry: a sidecar's (above, and `paused` when its handler
#: pauses the task), plus the gateway's own phases, which a peer gateway may relay.
EventStatus = Literal[ProgressState, TerminalState, "paused", "pending", "running", "canceled"]
#: The same set, for membership tests (`get_args` flattens the nested Literals).
EVENT_STATUSES: Final[frozenset[str]] = frozenset(get_args(EventStatus))


class MeshEvent(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of the events; the `type` key is the tag."""


class FlyEvent(MeshEvent, tag="fly"):
    """One FLY (or `n` consecutive FLYs merged into one): `data` is the FLY dict's JSON bytes,
    spliced into the request and into SSE as they are, never re-encoded."""

    data: msgspec.Raw
    seq: int | None = None  # None: the sender does not count (upstream, legacy)
    n: int = 1  # FLYs this event stands for (text FLYs coalesced under pressure)


class StatusData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The `data` object of a status event. Progress reports fill the route fields; the end
    actors' terminal reports fill `id` … `error_details` (upstream's x-sink / x-sump shapes)."""

    prev: list[str] = []
    curr: str | None = None
    next: list[str] = []
    actor: str | None = None
    duration_ms: int | None = None
    id: str | None = None
    status: str | None = None
    timestamp: str | None = None
    progress: float | None = None
    result: Any = msgspec.UNSET  # the task's result; `null` is a result too
    error: str | None = None
    error_details: Any = msgspec.UNSET
    current_actor_idx: int | None = None
    current_actor_name: str | None = None
    flies: int | None = None  # terminal only: FLYs the task's sidecars sent in all
    # `paused` only (front-doors.md "Pause and resume"): the envelope to resume, and the
    # handler's `x-asya-pause` object.
    envelope: Any = msgspec.UNSET
    pause: Any = msgspec.UNSET


class StatusEvent(MeshEvent, tag="status"):
    """A progress or terminal report; decoding refuses a status outside `EventStatus`."""

    status: EventStatus
    data: StatusData = msgspec.field(default_factory=StatusData)


Event = FlyEvent | StatusEvent

_encoder: Final = msgspec.json.Encoder()


def encode_events(events: list[Event]) -> bytes:
    """The request body: one object for a single event, else a JSON array (a batch)."""
    if len(events) == 1:
        return _encoder.encode(events[0])
    return _encoder.encode(events)


__all__ = [
    "EVENT_STATUSES",
    "FLY_COUNT_HEADER",
    "Event",
    "EventStatus",
    "FlyEvent",
    "MeshEvent",
    "ProgressState",
    "StatusData",
    "StatusEvent",
    "TerminalState",
    "encode_events",
]
