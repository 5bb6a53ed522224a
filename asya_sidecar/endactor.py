"""End-actor mode (`--end`): serve x-sink / x-sump with no runtime; report, then ack.

The report (upstream's shapes, plus the task's FLY count) is `reports.terminal` (pure); this
module is the I/O loop. Reports are skipped for fan-out children (`parent_id`) and
`x-asya-fan-in` partials.
"""

from __future__ import annotations

import anyio
import msgspec
import structlog

from asya_runtime.wire import Envelope

from . import reports
from .worker import Worker, _quietly

log = structlog.get_logger("asya.sidecar.end")

_decoder = msgspec.json.Decoder(Envelope)


async def run_end_worker(w: Worker) -> None:
    """Take end-queue messages until shutdown: report the terminal status, then ack."""
    is_sump = w.cfg.actor_name == w.cfg.sump
    m = w.metrics
    while not w.life.stopping.is_set():
        delivery = await w.receive()
        if delivery is None:
            continue
        m.received.labels(w.queue, m.transport).inc()
        with w.life.busy() as scope:
            await _consume(w, delivery.body, is_sump)
        with anyio.CancelScope(shield=True):
            if scope.cancelled_caught:  # shutdown grace over: back untouched
                await _quietly(delivery.requeue(0.0))
            else:
                await _quietly(delivery.ack())


async def _consume(w: Worker, body: bytes, is_sump: bool) -> None:
    try:
        env = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.error("unparsable message on an end queue, dropped", error=str(exc))
        w.metrics.failed.labels(w.queue, "parse_error").inc()
        return
    event = reports.terminal(env, is_sump=is_sump, now=w.clock())
    gw = w.gateway.resolve(env.headers)
    if event is not None and gw is not None and env.id:
        await w.gateway.report(gw, env.id, event)
    log.info(
        "end of route",
        envelope_id=env.id,
        phase=env.status.get("phase"),
        reported=event is not None and gw is not None,
    )
    w.metrics.processed.labels(w.queue, "end_consumed").inc()


__all__ = [
    "run_end_worker",
]
