"""The envelopes the gateway enqueues: a new task's first one, and a paused task's on resume.

Pure: upstream's envelope JSON (`id`, `route`, `headers`, `status`, `payload`) built from a
stored record or rebuilt from the envelope a pause left with the gateway.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .answers import merge_payload
from .state import TaskRecord, rfc3339

_encoder: Final = msgspec.json.Encoder()
PAUSE_HEADER: Final = "x-asya-pause"
SINK: Final = "x-sink"  # upstream's default end queue (ASYA_ACTOR_SINK)


def first_envelope(rec: TaskRecord, headers: dict[str, Any] | None, report_url: str) -> bytes:
    """A new task's envelope for its first actor; sidecars report to `report_url`."""
    created = rfc3339(rec.created_at)
    status: dict[str, Any] = {
        "phase": "pending",
        "actor": rec.route[0],
        "attempt": 1,
        "created_at": created,
        "updated_at": created,
    }
    if rec.deadline_at is not None:
        status["deadline_at"] = rfc3339(rec.deadline_at)
    return _encoder.encode(
        {
            "id": rec.id,
            "route": {"prev": [], "curr": rec.route[0], "next": rec.route[1:]},
            "headers": {**(headers or {}), "x-asya-gateway-url": report_url},
            "status": status,
            "payload": rec.payload,
        }
    )


def resumed_envelope(
    paused: dict[str, Any], patch: dict[str, Any], message: dict[str, Any] | None
) -> tuple[str, bytes]:
    """(the actor to enqueue it for, the envelope): the paused one with the answer merged into
    its payload and the pause header gone."""
    env = dict(paused)
    env["payload"] = merge_payload(env.get("payload"), patch, message)
    env["headers"] = {k: v for k, v in (env.get("headers") or {}).items() if k != PAUSE_HEADER}
    curr = (env.get("route") or {}).get("curr") or ""
    if not curr:
        # The handler that paused was the route's last actor: its output goes where any
        # end-of-route output goes, x-sink, which reports `succeeded` with it.
        curr = SINK
        env["status"] = {**(env.get("status") or {}), "phase": "succeeded", "reason": "Completed"}
    return curr, _encoder.encode(env)


__all__ = ["PAUSE_HEADER", "SINK", "first_envelope", "resumed_envelope"]
