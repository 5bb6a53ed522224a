"""One envelope's path through the sidecar as a sans-IO state machine, the way h11's `Connection`
is: `EnvelopeMachine.handle(event, now)` takes what happened and returns what to do.

Knows nothing about anyio, HTTP, sockets or queues; the clock is a parameter. `worker.py`
carries the actions out and feeds their results back. Each `handle()` returns zero or more
side actions (`Report`, `Count`, `Log`, `Fatal`: do them, no answer) followed by at most one
action that needs an answer:

    Preflight        -> PreflightAnswered
    StartInvoke      -> FrameArrived ... (each frame as it arrives), or InvokeFailed,
                        RuntimeGone, TimedOut
    Send/SendWithAck -> Sent or SendFailed
    ReportPause      -> PauseStored
    CancelInvocation -> CancelDone
    Ack / Requeue    -> nothing: the envelope is done

`Report` of a FLY needs no answer; when the envelope's event stream took it, the shell calls
`fly_accepted()` (only accepted FLYs are counted into `x-asya-fly-count`; it returns nothing,
so there is no action to drop). `Shutdown` (grace over) may come in place
of any answer while waiting on the pre-flight or the runtime. The states:

    NEW -> [PREFLIGHT] -> RUNNING -> [CANCELLING] -> SENDING -> DONE
      \\______________\\____________________________/   (parse error, route mismatch,
                                                        pre-flight, deadline: SENDING)

Rules: every delivery ends in exactly one of ack (`Ack`, or a `SendWithAck` answered `Sent`),
requeue, or "lease lost" (another consumer settles it); every output is sent before the ack;
nothing is routed after an error frame or a cancel; the last emit is held until `end` and goes
out with the ack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from asya_runtime.wire import Emit, End, Error, Fly

from . import reports, routing
from .envelope_io import (
    Ack,
    Action,
    CancelDone,
    CancelInvocation,
    Cancelled,
    Count,
    Delivered,
    EnvelopeEvent,
    Fatal,
    FrameArrived,
    InvokeFailed,
    Log,
    PauseStored,
    Preflight,
    PreflightAnswered,
    Report,
    ReportPause,
    Requeue,
    RuntimeGone,
    Send,
    SendFailed,
    SendWithAck,
    Sent,
    Shutdown,
    StartInvoke,
    TimedOut,
)
from .envelope_settle import (  # the send limits are still importable from here
    MAX_SEND_ATTEMPTS,  # noqa: F401
    REQUEUE_ON_FAILURE,  # noqa: F401
    EnvelopeStateError,
    Settings,
    Settling,
    State,
)
from .resiliency import Exhausted, NoPolicy, Retry, decide
from .routing import Outgoing

REQUEUE_UNPAUSED: Final = 2.0  # seconds before a pause the gateway did not store is retried
PAUSE_HEADER: Final = "x-asya-pause"


class EnvelopeMachine(Settling):
    """One delivery, from `Delivered` to its ack or requeue. Single use."""

    @property
    def envelope_id(self) -> str | None:
        return None if self.env is None else self.env.id

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    def handle(self, event: EnvelopeEvent, now: float) -> list[Action]:
        """Take one event; return the actions it calls for (see the module docstring)."""
        handler = _HANDLERS.get((self.state, type(event)))
        if handler is None:
            if isinstance(event, Shutdown | Cancelled):
                return []  # nothing left to interrupt
            raise EnvelopeStateError(f"{type(event).__name__} in state {self.state.name}")
        return handler(self, event, now)

    # -- before the runtime ---------------------------------------------------------------

    def _delivered(self, ev: Delivered, now: float) -> list[Action]:
        names = self.s.names
        self._body, self._attempt = ev.body, ev.attempt
        parsed = routing.parse_message(ev.body, names, now)
        if isinstance(parsed, Outgoing):
            self._flies = routing.fly_count(parsed.envelope.headers)
            log = Log("warning", "unparsable message sent to sump")
            return [Count("failed", "parse_error"), log, *self._send_all([parsed], None)]
        self.env = env = parsed
        self._flies = routing.fly_count(env.headers)
        if not routing.serves(env, names.actor):
            out = routing.route_mismatch(env, names, now)
            return [Count("failed", "route_mismatch"), *self._send_all([out], "error")]
        self.gateway, _ = reports.resolve_gateway(env.headers, self.s.gateway_url)
        if self.gateway is not None:
            assert env.id is not None
            self.state = State.PREFLIGHT
            return [Preflight(self.gateway, env.id)]
        return self._deadline_then_invoke(now)

    def _preflight_answered(self, ev: PreflightAnswered, now: float) -> list[Action]:
        assert self.env is not None
        out = routing.preflight(self.env, ev.status, self.s.names, now) if ev.status else None
        if out is not None:
            return self._send_all([out], f"preflight_{ev.status}")
        return self._deadline_then_invoke(now)

    def _deadline_then_invoke(self, now: float) -> list[Action]:
        env, names = self.env, self.s.names
        assert env is not None
        left = routing.deadline_left(env, now)
        if left is not None and left <= 0:
            out = routing.deadline_expired(env, names, now)
            return [Count("failed", "sla_timeout"), *self._send_all([out], "sla_expired")]
        acts: list[Action] = []
        if self.gateway is not None:
            acts += [
                Report(reports.progress("received", env, names.actor)),
                Report(reports.progress("processing", env, names.actor)),
            ]
        self._inp = routing.prepare_input(env, names, now)
        self._budget = self.s.actor_timeout if left is None else min(self.s.actor_timeout, left)
        self._t0 = now
        self.state = State.RUNNING
        acts.append(StartInvoke(self._inp, self._budget))
        return acts

    # -- while the handler runs -----------------------------------------------------------

    def _frame(self, ev: FrameArrived, now: float) -> list[Action]:
        if self._awaiting_send:
            raise EnvelopeStateError("FrameArrived in state RUNNING while a send is unanswered")
        f = ev.frame
        if isinstance(f, Fly):
            if self.gateway is None:
                return []
            return [Report(reports.fly(f.data, self._flies))]
        if isinstance(f, Emit):
            return self._emit(f, now)
        if isinstance(f, Error):
            if self._error is None and self._pause is None:  # the first of them decides
                self._error = f
            return []
        if isinstance(f, End):
            return self._ended(now)
        raise EnvelopeStateError(f"unexpected frame {type(f).__name__} in state RUNNING")

    def fly_accepted(self) -> None:
        """The last reported FLY was taken into the envelope's event stream: count it into
        `x-asya-fly-count` (no effect once the handler is over: nothing is sent after)."""
        if self.state is State.RUNNING:
            self._flies += 1

    def _emit(self, f: Emit, now: float) -> list[Action]:
        if self._error is not None or self._pause is not None:
            return []  # nothing counts after an error frame or a pause
        assert self._inp is not None
        names = self.s.names
        out = routing.route_emit(self._inp, f, self._index, names, now)
        acts: list[Action] = []
        pause = f.headers.get(PAUSE_HEADER)
        if isinstance(pause, dict):
            # Not routed: reported to the gateway at `end`, which keeps it until resumed.
            self._pause = (out, pause)
            self._index += 1
            prev, self._held = self._held, None
            if prev is not None:
                self._awaiting_send = True
                acts.append(self._send(routing.with_fly_count(prev, self._flies)))
            return acts
        if self._index == 0 and self.gateway is not None:
            ms = int((now - self._t0) * 1000)
            acts.append(Report(reports.progress("completed", out.envelope, names.actor, ms)))
        self._index += 1
        prev, self._held = self._held, out
        if prev is not None:
            self._awaiting_send = True
            acts.append(self._send(routing.with_fly_count(prev, self._flies)))
        return acts

    def _sent_while_running(self, ev: Sent, now: float) -> list[Action]:
        if not self._awaiting_send:
            raise EnvelopeStateError("Sent in state RUNNING with no send in flight")
        self._awaiting_send = False
        return []

    def _send_failed_while_running(self, ev: SendFailed, now: float) -> list[Action]:
        # The handler is still running (frames unread): stop it before settling.
        self._awaiting_send = False
        self._failure = ev
        return self._cancel("send_failed")

    def _ended(self, now: float) -> list[Action]:
        inp, names = self._inp, self.s.names
        assert inp is not None
        held = [] if self._held is None else [self._held]
        err = self._error
        if self._pause is not None:
            return self._report_pause(now)
        if err is None:
            if held:
                return self._send_all(held, "success")
            return self._send_all([routing.no_output(inp, names, now)], "empty_response")
        first = routing.parse_rfc3339(inp.headers.get(routing.FIRST_ATTEMPT))
        attempt = inp.status.get("attempt", 1)
        decision = decide(
            self.s.resiliency,
            error_type=err.type or err.code,
            mro=err.mro,
            attempt=attempt if isinstance(attempt, int) else 1,
            elapsed=None if first is None else now - first,
            rand=self.rand,
        )
        acts: list[Action] = [
            Count("runtime_errors", "execution_error"),
            Log(
                "info",
                "handler error",
                {
                    "error_type": err.type,
                    "message": err.message[:500],
                    "decision": type(decision).__name__,
                },
            ),
        ]
        policy = None if isinstance(decision, NoPolicy) else decision
        out = routing.runtime_error(inp, err, policy, names, now)
        if isinstance(decision, Retry):
            status = "retried"
        elif isinstance(decision, Exhausted):
            acts.append(Count("failed", "policy_exhausted"))
            status = "policy_routed" if decision.on_exhausted else "error"
        else:
            acts.append(Count("failed", "runtime_error"))
            status = "error"
        return acts + self._send_all([*held, out], status)

    def _report_pause(self, now: float) -> list[Action]:
        assert self._pause is not None and self.env is not None and self.env.id is not None
        out, pause = self._pause
        self.state = State.SENDING
        if self.gateway is None:
            log = Log("warning", "paused with no gateway to keep the envelope; requeued")
            return [log, *self._requeue(REQUEUE_UNPAUSED)]
        env = msgspec.to_builtins(routing.with_fly_count(out, self._flies).envelope)
        event = reports.status_event("paused", envelope=env, pause=pause, flies=self._flies)
        return [ReportPause(self.gateway, self.env.id, event)]

    def _pause_stored(self, ev: PauseStored, now: float) -> list[Action]:
        if ev.ok:
            return [Count("processed", "paused"), *self._ack()]
        log = Log("warning", "the gateway did not store the pause; requeued")
        return [log, *self._requeue(REQUEUE_UNPAUSED)]

    def _runtime_gone(self, ev: RuntimeGone, now: float) -> list[Action]:
        assert self.env is not None
        held = [] if self._held is None else [self._held]
        out = routing.runtime_lost(self.env, ev.reason, self.s.names, now)
        return [
            Count("runtime_errors", "connection_lost"),
            Count("failed", "runtime_error"),
            Log("warning", "runtime lost mid-invocation; envelope to sump", {"error": ev.reason}),
            *self._send_all([*held, out], "error"),
        ]

    def _invoke_failed(self, ev: InvokeFailed, now: float) -> list[Action]:
        log = Log(
            "info", "runtime not reachable; envelope requeued untouched", {"error": ev.reason}
        )
        return [log, *self._requeue(0.0)]


_Handler = Callable[[EnvelopeMachine, Any, float], list[Action]]
_S = State
# The whole table: (state, event) -> handler. Anything else is an `EnvelopeStateError`, except
# `Shutdown`/`Cancelled` with nothing left to interrupt (ignored).
_HANDLERS: Final[dict[tuple[State, type], _Handler]] = {
    (_S.NEW, Delivered): EnvelopeMachine._delivered,
    (_S.PREFLIGHT, PreflightAnswered): EnvelopeMachine._preflight_answered,
    (_S.PREFLIGHT, Shutdown): EnvelopeMachine._shutdown,
    (_S.RUNNING, FrameArrived): EnvelopeMachine._frame,
    (_S.RUNNING, Sent): EnvelopeMachine._sent_while_running,
    (_S.RUNNING, SendFailed): EnvelopeMachine._send_failed_while_running,
    (_S.RUNNING, TimedOut): EnvelopeMachine._timed_out,
    (_S.RUNNING, RuntimeGone): EnvelopeMachine._runtime_gone,
    (_S.RUNNING, InvokeFailed): EnvelopeMachine._invoke_failed,
    (_S.RUNNING, Cancelled): EnvelopeMachine._cancelled,
    (_S.RUNNING, Shutdown): EnvelopeMachine._shutdown,
    (_S.CANCELLING, CancelDone): EnvelopeMachine._cancel_done,
    (_S.SENDING, Sent): EnvelopeMachine._sent,
    (_S.SENDING, SendFailed): EnvelopeMachine._send_failed,
    (_S.SENDING, PauseStored): EnvelopeMachine._pause_stored,
}

__all__ = [
    "PAUSE_HEADER",
    "Ack",
    "Action",
    "CancelDone",
    "CancelInvocation",
    "Cancelled",
    "Count",
    "Delivered",
    "EnvelopeEvent",
    "EnvelopeMachine",
    "EnvelopeStateError",
    "Fatal",
    "FrameArrived",
    "InvokeFailed",
    "Log",
    "PauseStored",
    "Preflight",
    "PreflightAnswered",
    "Report",
    "ReportPause",
    "Requeue",
    "RuntimeGone",
    "Send",
    "SendFailed",
    "SendWithAck",
    "Sent",
    "Settings",
    "Shutdown",
    "StartInvoke",
    "State",
    "TimedOut",
]
