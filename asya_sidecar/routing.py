"""Routing decisions: input envelope + outcome -> outgoing envelopes and their destination actors.

Pure: the clock is a parameter (`now`, POSIX seconds) and nothing here touches a queue, a socket
or the gateway. Status phases and reasons are upstream's (digest §4.2-4.7), with the spec's
fixes: headers kept on x-sink/x-sump envelopes, `created_at`/`deadline_at` kept on every hop,
deterministic fan-out ids.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Final

import msgspec

from asya_runtime.wire import Emit, Envelope, Error, Route

from .envelope_status import build_status as _status
from .envelope_status import failed_fields as _failed
from .envelope_status import failed_status as _status_failed
from .envelope_status import kept_fields as _kept
from .envelope_status import parse_rfc3339, rfc3339
from .outgoing import (
    ON_EXHAUSTED,
    RETRY,
    ROUTING,
    SINK,
    SUMP,
    Names,
    Outgoing,
    encode,
    fly_count,
    with_fly_count,
)
from .resiliency import Exhausted, Retry

# Fan-out ids are UUIDv5 of (input id, emit index) in this namespace: a redelivered envelope
# re-emits the same ids, so downstream consumers can de-duplicate.
FANOUT_NAMESPACE: Final = uuid.UUID("5b0c1f9e-7a57-4d1c-9a55-a5a000000001")

FIRST_ATTEMPT: Final = "x-asya-first-attempt"
ROUTE_OVERRIDE: Final = "x-asya-route-override"
ROUTE_RESOLVED: Final = "x-asya-route-resolved"
GATEWAY_URL: Final = "x-asya-gateway-url"
MESH_STATUS: Final = "x-asya-mesh-status"
FAN_IN: Final = "x-asya-fan-in"


def fanout_id(input_id: str, index: int) -> str:
    """The id of the `index`-th emit (index >= 1) of the invocation of `input_id`."""
    return str(uuid.uuid5(FANOUT_NAMESPACE, f"{input_id}/{index}"))


# -- parsing and checks -----------------------------------------------------------------------

_envelope_json: Final = msgspec.json.Decoder(Envelope)


def parse_message(body: bytes, names: Names, now: float) -> Envelope | Outgoing:
    """The envelope in a queue message, or the x-sump message for an unusable body."""
    try:
        env = _envelope_json.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _sump_raw(body, f"Failed to parse message: {exc}", "ParseError", names, now)
    if not env.id:
        return _sump_raw(body, "Message missing required 'id' field", "ParseError", names, now)
    return env


def _sump_raw(body: bytes, message: str, reason: str, names: Names, now: float) -> Outgoing:
    # Keep what can be kept: the id if the body has one, the raw body always (as text).
    try:
        loose = msgspec.json.decode(body)
    except msgspec.DecodeError:
        loose = None
    env_id = loose.get("id") if isinstance(loose, dict) else None
    if not isinstance(env_id, str) or not env_id:
        env_id = str(uuid.uuid5(FANOUT_NAMESPACE, body.decode("utf-8", "replace")))
    headers = loose.get("headers") if isinstance(loose, dict) else None
    env = Envelope(
        id=env_id,
        route=Route(prev=[], curr=names.sump, next=[]),
        headers=headers if isinstance(headers, dict) else {},
        status=_status({}, now, **_failed(reason, message, names.actor)),
        payload={"error": message, "original_body": body.decode("utf-8", "replace")},
    )
    return Outgoing(actor=names.sump, envelope=env, kind=SUMP)


def serves(env: Envelope, actor: str) -> bool:
    """Whether `route.curr` is this actor, directly or via `x-asya-route-override`."""
    curr = env.route.curr
    if curr == actor:
        return True
    override = env.headers.get(ROUTE_OVERRIDE)
    return isinstance(override, dict) and override.get(curr) == actor


def route_mismatch(env: Envelope, names: Names, now: float) -> Outgoing:
    msg = f"Route mismatch: route.curr is {env.route.curr!r}, this actor is {names.actor!r}"
    return sump(env, msg, "RouteMismatch", names, now)


def sump(env: Envelope, message: str, reason: str, names: Names, now: float) -> Outgoing:
    """The x-sump message for an infrastructure failure: original envelope kept in the payload."""
    status = _status(env.status, now, **_failed(reason, message, names.actor))
    out = Envelope(
        id=env.id,
        parent_id=env.parent_id,
        route=_copy_route(env.route),
        headers=copy.deepcopy(env.headers),
        status=status,
        payload={"error": message, "original_payload": env.payload},
    )
    return Outgoing(actor=names.sump, envelope=out, kind=SUMP)


def _copy_route(r: Route) -> Route:
    return Route(prev=list(r.prev), curr=r.curr, next=list(r.next))


def prepare_input(env: Envelope, names: Names, now: float) -> Envelope:
    """The envelope as sent to the runtime: status `processing`, first attempt stamped."""
    old = env.status
    attempt = old.get("attempt", 1)
    if not isinstance(attempt, int) or attempt < 1 or old.get("actor") != names.actor:
        attempt = 1  # a new actor starts counting again
    base = {k: v for k, v in old.items() if k not in ("reason", "error")}
    status = _status(
        base,
        now,
        keep_all=True,
        phase="processing",
        actor=names.actor,
        attempt=attempt,
        max_attempts=0,
    )
    headers = dict(env.headers)
    headers.setdefault(FIRST_ATTEMPT, rfc3339(now))
    return msgspec.structs.replace(env, status=status, headers=headers)


def deadline_left(env: Envelope, now: float) -> float | None:
    """Seconds until `status.deadline_at`, or `None` without a (parsable) deadline."""
    at = parse_rfc3339(env.status.get("deadline_at"))
    return None if at is None else at - now


def deadline_expired(env: Envelope, names: Names, now: float) -> Outgoing:
    """Deadline passed before invoking: x-sink `failed/Timeout`, payload untouched."""
    err = {"message": "SLA deadline expired", "type": "Timeout"}
    out = msgspec.structs.replace(
        env,
        route=_copy_route(env.route),
        status=_status_failed(env, "Timeout", err, names, now, max_attempts=1) | {"attempt": 1},
    )
    return Outgoing(actor=names.sink, envelope=out, kind=SINK)


def timed_out(env: Envelope, timeout: float, names: Names, now: float) -> Outgoing:
    """The invocation ran out of time and was cancelled: x-sink `failed/Timeout`."""
    msg = f"Runtime timeout exceeded after {timeout:g}s"
    err = {"message": msg, "type": "Timeout"}
    return _error_to_sink(env, "Timeout", "timeout", err, names, now)


def preflight(env: Envelope, gateway_status: str, names: Names, now: float) -> Outgoing | None:
    """A pre-flight answer of `canceled`/`paused` -> x-sink with that phase; else carry on."""
    reasons = {"canceled": "PreFlightCanceled", "paused": "PreFlightPaused"}
    if gateway_status not in reasons:
        return None
    status = _status(
        env.status,
        now,
        keep_all=True,
        created=False,
        phase=gateway_status,
        reason=reasons[gateway_status],
        actor=names.actor,
    )
    out = msgspec.structs.replace(env, route=_copy_route(env.route), status=status)
    return Outgoing(actor=names.sink, envelope=out, kind=SINK)


# -- outcomes of an invocation -----------------------------------------------------------------


def _from_emit(
    emit: Emit, env_id: str, parent_id: str | None, headers: dict[str, Any], status: dict[str, Any]
) -> Envelope:
    return Envelope(
        id=env_id,
        parent_id=parent_id,
        route=emit.route,
        headers=headers,
        status=status,
        payload=emit.payload,
    )


def route_emit(inp: Envelope, emit: Emit, index: int, names: Names, now: float) -> Outgoing:
    """The outgoing envelope of the `index`-th (0-based) `emit` of the invocation of `inp`."""
    assert inp.id is not None
    if index == 0:
        env_id, parent_id = inp.id, inp.parent_id
    else:
        env_id, parent_id = fanout_id(inp.id, index), inp.id
    headers = dict(emit.headers)
    base = emit.status or inp.status
    kept = _kept(inp.status) | _kept(base)
    curr = emit.route.curr

    if not curr:
        status = _status(
            kept,
            now,
            phase="succeeded",
            reason="Completed",
            actor=base.get("actor", names.actor),
            attempt=base.get("attempt", 1),
            max_attempts=base.get("max_attempts", 1) or 1,
        )
        return Outgoing(
            actor=names.sink,
            envelope=_from_emit(emit, env_id, parent_id, headers, status),
            kind=SINK,
        )
    target = curr
    override = headers.get(ROUTE_OVERRIDE)
    if isinstance(override, dict) and isinstance(override.get(curr), str) and override[curr]:
        target = override[curr]
        resolved = dict(headers.get(ROUTE_RESOLVED) or {})
        resolved[curr] = {"target": target, "by": names.actor}
        headers[ROUTE_RESOLVED] = resolved
    status = _status(kept, now, phase="pending", actor=target, attempt=1, max_attempts=1)
    return Outgoing(
        actor=target, envelope=_from_emit(emit, env_id, parent_id, headers, status), kind=ROUTING
    )


def no_output(inp: Envelope, names: Names, now: float) -> Outgoing:
    """The handler emitted nothing: the input envelope to x-sink, `succeeded/Completed`."""
    status = _status(
        inp.status, now, keep_all=True, created=False, phase="succeeded", reason="Completed"
    )
    out = msgspec.structs.replace(inp, status=status)
    return Outgoing(actor=names.sink, envelope=out, kind=SINK)


def error_details(err: Error) -> dict[str, Any]:
    return {
        "message": err.message,
        "type": err.type or err.code,
        "mro": list(err.mro),
        "traceback": err.traceback,
    }


def _error_to_sink(
    inp: Envelope,
    reason: str,
    code: str,
    err: dict[str, Any],
    names: Names,
    now: float,
    max_attempts: int | None = None,
) -> Outgoing:
    out = Envelope(
        id=inp.id,
        parent_id=inp.parent_id,
        route=_copy_route(inp.route),
        headers=dict(inp.headers),
        status=_status_failed(inp, reason, err, names, now, max_attempts),
        payload={"error": code, "details": err, "original_payload": inp.payload},
    )
    return Outgoing(actor=names.sink, envelope=out, kind=SINK)


def runtime_error(
    inp: Envelope, err: Error, decision: Retry | Exhausted | None, names: Names, now: float
) -> Outgoing:
    """Act on an `error` frame as the resiliency decision says (None = no policy)."""
    details = error_details(err)
    if isinstance(decision, Retry):
        attempt = inp.status.get("attempt", 1)
        base = {k: v for k, v in inp.status.items() if k != "reason"}
        status = _status(
            base,
            now,
            keep_all=True,
            created=False,
            phase="retrying",
            actor=names.actor,
            error=details,
            attempt=(attempt if isinstance(attempt, int) else 1) + 1,
            max_attempts=decision.max_attempts,
        )
        out = msgspec.structs.replace(inp, status=status)
        return Outgoing(actor=names.actor, envelope=out, kind=RETRY, delay=decision.delay)
    if isinstance(decision, Exhausted) and decision.on_exhausted:
        # Unlike upstream (which leaves route.curr on this actor, so the target's route check
        # fails), the route is shifted onto the on-exhausted actors.
        route = inp.route.shifted(list(decision.on_exhausted))
        status = _status_failed(inp, "PolicyRouted", details, names, now, decision.max_attempts)
        out = msgspec.structs.replace(inp, route=route, status=status)
        return Outgoing(actor=route.curr, envelope=out, kind=ON_EXHAUSTED)
    if isinstance(decision, Exhausted):
        return _error_to_sink(
            inp, "PolicyExhausted", err.code, details, names, now, decision.max_attempts
        )
    return _error_to_sink(inp, "RuntimeError", err.code, details, names, now)


def runtime_lost(inp: Envelope, reason: str, names: Names, now: float) -> Outgoing:
    """The runtime connection broke mid-invocation (or sent garbage): x-sump."""
    return sump(inp, reason, "RuntimeError", names, now)


__all__ = [
    "FANOUT_NAMESPACE",
    "FAN_IN",
    "FIRST_ATTEMPT",
    "GATEWAY_URL",
    "MESH_STATUS",
    "ON_EXHAUSTED",
    "RETRY",
    "ROUTE_OVERRIDE",
    "ROUTE_RESOLVED",
    "ROUTING",
    "SINK",
    "SUMP",
    "Names",
    "Outgoing",
    "deadline_expired",
    "deadline_left",
    "encode",
    "error_details",
    "fanout_id",
    "fly_count",
    "no_output",
    "parse_message",
    "parse_rfc3339",
    "preflight",
    "prepare_input",
    "rfc3339",
    "route_emit",
    "route_mismatch",
    "runtime_error",
    "runtime_lost",
    "serves",
    "sump",
    "timed_out",
    "with_fly_count",
]
