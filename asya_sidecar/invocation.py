"""One invocation on a runtime connection: its frames become outputs and gateway events.

The newest emit is held until the next frame ends it (the next emit, or `end`), so the last
output can go out with the ack. Whatever cuts an invocation short leaves the connection clean:
`cancel` and drain to `end` within the cancel grace, or the connection is dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from asya_runtime.wire import Emit, End, Envelope, Error, Fly

from . import routing
from .events import EventStream
from .resiliency import Exhausted, NoPolicy, Retry, decide
from .routing import Outgoing
from .runtime_client import RuntimeConnection, RuntimeLost

if TYPE_CHECKING:
    from .worker import Sidecar

log = structlog.get_logger("asya.sidecar")


class RuntimeHung(Exception):
    """The runtime did not answer `end` after a cancel within the grace period."""


def route_data(env: Envelope, actor: str) -> dict[str, Any]:
    r = env.route
    return {"prev": list(r.prev), "curr": r.curr, "next": list(r.next), "actor": actor}


async def invoke(
    sc: Sidecar,
    conn: RuntimeConnection,
    env: Envelope,
    inp: Envelope,
    budget: float,
    events: EventStream,
) -> tuple[str, Outgoing | None]:
    """Run the handler; returns the status and the last output (held back, see module doc)."""
    names, m = sc.names, sc.metrics
    index = 0
    error: Error | None = None
    last: Outgoing | None = None  # the newest emit: sent when the next one comes, or at the end
    t0 = time.perf_counter()
    try:
        with anyio.move_on_after(budget) as scope:
            async for frame in conn.invoke(inp):
                if isinstance(frame, Fly):
                    events.fly(frame.data)
                elif isinstance(frame, Emit):
                    if error is not None:
                        continue  # nothing counts after an error frame
                    out = routing.route_emit(inp, frame, index, names, sc.clock())
                    if last is not None:
                        await sc.send(last)
                    last = out
                    if index == 0:
                        data = route_data(out.envelope, names.actor)
                        data["duration_ms"] = int((time.perf_counter() - t0) * 1000)
                        events.status("completed", data)
                    index += 1
                elif isinstance(frame, Error):
                    error = frame
                elif isinstance(frame, End):
                    break
    except RuntimeLost as exc:
        m.child(m.runtime_errors, sc.queue, "connection_lost").inc()
        m.child(m.failed, sc.queue, "runtime_error").inc()
        log.warning("runtime lost mid-invocation; envelope to sump", error=str(exc))
        await _send_held(sc, last, events)
        await sc.send(routing.runtime_lost(env, str(exc), names, sc.clock()))
        return "error", None
    except BaseException:
        # An output refused (TransportError) or shutdown cut us off: this invocation's frames
        # (at least its `end`) are unread and must not be taken for the next invocation's.
        await _abandon_invocation(sc, conn)
        raise
    finally:
        m.child(m.runtime, sc.queue).observe(time.perf_counter() - t0)
    if scope.cancelled_caught:
        await _cancel_invocation(sc, conn)
        m.child(m.failed, sc.queue, "timeout").inc()
        await _send_held(sc, last, events)
        await sc.send(routing.timed_out(inp, budget, names, sc.clock()))
        return "error", None
    if error is not None:
        m.child(m.runtime_errors, sc.queue, "execution_error").inc()
        await _send_held(sc, last, events)
        return await _on_error(sc, inp, error), None
    if last is None:
        await events.flush(sc.cfg.fly_flush_timeout)
        await sc.send(routing.no_output(inp, names, sc.clock()))
        return "empty_response", None
    # The FLYs go first: the next actor (or x-sink's terminal status) must not overtake them.
    await events.flush(sc.cfg.fly_flush_timeout)
    return "success", last


async def _send_held(sc: Sidecar, last: Outgoing | None, events: EventStream) -> None:
    """Before a terminal send: the envelope's events get their bounded flush, the held emit
    (produced before the failure) goes out."""
    await events.flush(sc.cfg.fly_flush_timeout)
    if last is not None:
        await sc.send(last)


async def _cancel_and_drain(sc: Sidecar, conn: RuntimeConnection) -> bool:
    """Send `cancel` and discard frames up to `end`, within the cancel grace (shielded: also
    runs when shutdown cancelled us). False if the runtime did not answer in time; the
    connection is then marked closed so that the worker reconnects."""
    if conn.closed:
        return True
    with anyio.move_on_after(sc.cfg.cancel_grace, shield=True) as grace:
        await conn.cancel()
        try:
            await conn.drain_to_end()
        except RuntimeLost:
            return True
    if grace.cancelled_caught:
        conn.closed = True
        return False
    return True


async def _abandon_invocation(sc: Sidecar, conn: RuntimeConnection) -> None:
    """Leave the connection clean: this invocation's frames must not be taken for the next's."""
    if not await _cancel_and_drain(sc, conn):
        log.warning("runtime did not end an abandoned invocation; reconnecting")


async def _cancel_invocation(sc: Sidecar, conn: RuntimeConnection) -> None:
    """Cancel at the timeout; a runtime that never answers `end` makes us unhealthy."""
    if not await _cancel_and_drain(sc, conn):
        # The envelope still goes to x-sink and is acked; the worker then stops the sidecar.
        sc.metrics.healthy = False
        sc.fatal = RuntimeHung(
            f"runtime did not end a cancelled invocation in {sc.cfg.cancel_grace:g}s"
        )


async def _on_error(sc: Sidecar, inp: Envelope, err: Error) -> str:
    first = routing.parse_rfc3339(inp.headers.get(routing.FIRST_ATTEMPT))
    now = sc.clock()
    attempt = inp.status.get("attempt", 1)
    decision = decide(
        sc.cfg.resiliency,
        error_type=err.type or err.code,
        mro=err.mro,
        attempt=attempt if isinstance(attempt, int) else 1,
        elapsed=None if first is None else now - first,
        rand=sc.rand,
    )
    log.info(
        "handler error",
        error_type=err.type,
        message=err.message[:500],
        decision=type(decision).__name__,
    )
    out = routing.runtime_error(
        inp, err, None if isinstance(decision, NoPolicy) else decision, sc.names, now
    )
    await sc.send(out)
    if isinstance(decision, Retry):
        return "retried"
    if isinstance(decision, Exhausted):
        sc.metrics.child(sc.metrics.failed, sc.queue, "policy_exhausted").inc()
        return "policy_routed" if decision.on_exhausted else "error"
    sc.metrics.child(sc.metrics.failed, sc.queue, "runtime_error").inc()
    return "error"


__all__ = ["RuntimeHung", "invoke", "route_data"]
