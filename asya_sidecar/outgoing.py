"""`Outgoing`: an envelope bound for an actor's queue, its kinds, its body and its FLY count."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from asya_mesh.events import FLY_COUNT_HEADER
from asya_runtime.wire import Envelope

# Kinds of outgoing message (upstream's `message_type` metric label).
ROUTING: Final = "routing"
SINK: Final = "sink"
SUMP: Final = "sump"
RETRY: Final = "retry"
ON_EXHAUSTED: Final = "on_exhausted"


class Names(msgspec.Struct, kw_only=True, frozen=True):
    """The names routing needs: this actor and the two end queues."""

    actor: str
    sink: str = "x-sink"
    sump: str = "x-sump"


class Outgoing(msgspec.Struct, kw_only=True, frozen=True):
    """One envelope to send: to the queue of `actor`, visible after `delay` seconds."""

    actor: str
    envelope: Envelope
    kind: str
    delay: float = 0.0


def fly_count(headers: dict[str, Any]) -> int:
    """The task's FLYs so far (`x-asya-fly-count`); absent or bad (not a count) = 0."""
    v = headers.get(FLY_COUNT_HEADER)
    if isinstance(v, bool):
        return 0
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return v if isinstance(v, int) and v >= 0 else 0


def with_fly_count(out: Outgoing, count: int) -> Outgoing:
    """`out` carrying the task's FLY count on to its next hop (headers copied, not shared)."""
    env = out.envelope
    headers = dict(env.headers)
    headers[FLY_COUNT_HEADER] = count
    return msgspec.structs.replace(out, envelope=msgspec.structs.replace(env, headers=headers))


def encode(env: Envelope) -> bytes:
    """The queue body: the envelope as JSON."""
    return msgspec.json.encode(env)


__all__ = [
    "ON_EXHAUSTED",
    "RETRY",
    "ROUTING",
    "SINK",
    "SUMP",
    "Names",
    "Outgoing",
    "encode",
    "fly_count",
    "with_fly_count",
]
