"""End-actor mode (`--end`): serve x-sink / x-sump with no runtime; report, then ack.

The report shapes are upstream's (digest §4.8). `final_report` is pure; `run_end_worker` is the
I/O loop. Reports are skipped for fan-out children (`parent_id`) and `x-asya-fan-in` partials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from asya_runtime.wire import Envelope

from .events import status_event
from .routing import FAN_IN
from .worker import Sidecar

log = structlog.get_logger("asya.sidecar.end")

_decoder = msgspec.json.Decoder(Envelope)


def _timestamp(now: float) -> str:
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def final_report(env: Envelope, *, is_sump: bool, now: float) -> tuple[str, dict[str, Any]] | None:
    """(`succeeded`|`failed`, data) to report for an envelope arriving at an end queue, or None."""
    if env.parent_id or env.headers.get(FAN_IN) or not env.id:
        return None
    phase = env.status.get("phase")
    if not is_sump and phase not in ("succeeded", "failed", None):
        return None  # canceled / paused: the gateway already knows (it said so in pre-flight)
    failed = is_sump or phase == "failed"
    ts = _timestamp(now)
    if not failed:
        return "succeeded", {
            "id": env.id,
            "status": "succeeded",
            "timestamp": ts,
            "progress": 1.0,
            "result": env.payload,
        }
    payload = env.payload if isinstance(env.payload, dict) else {}
    err = env.status.get("error")
    if isinstance(err, dict) and err.get("message"):
        message, details = str(err["message"]), err
    else:
        message = str(payload.get("error") or "unknown error")
        details = payload.get("details") or {}
    r = env.route
    return "failed", {
        "id": env.id,
        "status": "failed",
        "timestamp": ts,
        "error": message,
        "error_details": details,
        "prev": list(r.prev),
        "curr": r.curr,
        "next": list(r.next),
        "current_actor_idx": len(r.prev),
        "current_actor_name": r.curr,
    }


async def run_end_worker(sc: Sidecar) -> None:
    """Take end-queue messages until shutdown: report the terminal status, then ack."""
    is_sump = sc.cfg.actor_name == sc.cfg.sump
    while not sc.stopping.is_set():
        delivery = await sc.receive()
        if delivery is None:
            continue
        sc.metrics.received.labels(sc.queue, sc.metrics.transport).inc()

        async def consume(body: bytes = delivery.body) -> None:
            try:
                env = _decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("unparsable message on an end queue, dropped", error=str(exc))
                sc.metrics.failed.labels(sc.queue, "parse_error").inc()
                return
            report = final_report(env, is_sump=is_sump, now=sc.clock())
            gw = sc.gateway.resolve(env.headers)
            if report is not None and gw is not None and env.id:
                state, data = report
                await sc.gateway.report(gw, env.id, status_event(state, data))
            log.info(
                "end of route",
                envelope_id=env.id,
                phase=env.status.get("phase"),
                reported=report is not None and gw is not None,
            )
            sc.metrics.processed.labels(sc.queue, "end_consumed").inc()

        await sc.settle(delivery, consume)
