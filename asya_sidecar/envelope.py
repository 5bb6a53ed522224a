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

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

from asya_runtime.wire import Emit, End, Envelope, Error, Fly

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
from .resiliency import Exhausted, NoPolicy, Resiliency, Retry, decide
from .routing import Names, Outgoing

MAX_SEND_ATTEMPTS: Final = 5  # deliveries whose outputs all failed to send, then x-sump
REQUEUE_ON_FAILURE: Final = 1.0  # seconds before a message whose outputs failed returns
REQUEUE_UNPAUSED: Final = 2.0  # seconds before a pause the gateway did not store is retried
PAUSE_HEADER: Final = "x-asya-pause"


class State(enum.Enum):
    NEW = "NEW"
    PREFLIGHT = "PREFLIGHT"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SENDING = "SENDING"
    DONE = "DONE"


class EnvelopeStateError(RuntimeError):
    """An event the machine cannot take in its state: a bug in the shell, never the peer's."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """What the machine needs from the sidecar's configuration."""

    names: Names
    actor_timeout: float
    cancel_grace: float = 5.0
    resiliency: Resiliency | None = None
    gateway_url: str | None = None


class EnvelopeMachine:
    """One delivery, from `Delivered` to its ack or requeue. Single use."""

    def __init__(self, settings: Settings, rand: Callable[[], float] = random.random) -> None:
        self.s = settings
        self.rand = rand
        self.state = State.NEW
        self.outcome: Literal["ack", "requeue", "lease_lost"] | None = None
        self.env: Envelope | None = None
        self.gateway: str | None = None
        self._body = b""
        self._attempt = 1
        self._inp: Envelope | None = None
        self._budget = 0.0
        self._t0 = 0.0
        self._flies = 0  # the task's FLYs before this hop + those accepted here
        self._index = 0  # emits routed so far
        self._held: Outgoing | None = None
        self._error: Error | None = None
        self._awaiting_send = False  # RUNNING: the previous held emit is being sent
        self._outbox: deque[Outgoing] = deque()
        self._after_cancel: Literal["timeout", "send_failed", "shutdown", "cancelled"] = "timeout"
        self._failure: SendFailed | None = None
        self._sumping = False
        self._sump_reason = ""
        self._in_flight: Outgoing | None = None  # the output of the last Send/SendWithAck
        self._last_delayed = False
        self._pause: tuple[Outgoing, Any] | None = None  # the emit that pauses the task

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

    def _cancel(
        self, why: Literal["timeout", "send_failed", "shutdown", "cancelled"]
    ) -> list[Action]:
        self._after_cancel = why
        self.state = State.CANCELLING
        return [CancelInvocation()]

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

    def _timed_out(self, ev: TimedOut, now: float) -> list[Action]:
        return self._cancel("timeout")

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

    def _cancelled(self, ev: Cancelled, now: float) -> list[Action]:
        if self._awaiting_send:
            return []  # the shell feeds it between frames only; too late to matter here
        log = Log("info", "task ended at the gateway; invocation cancelled", {"status": ev.status})
        return [log, *self._cancel("cancelled")]

    def _shutdown(self, ev: Shutdown, now: float) -> list[Action]:
        if self.state is State.RUNNING and not self._awaiting_send:
            return self._cancel("shutdown")
        return self._requeue(0.0)

    def _cancel_done(self, ev: CancelDone, now: float) -> list[Action]:
        why = self._after_cancel
        acts: list[Action] = []
        if why == "timeout":
            assert self._inp is not None
            if not ev.ended:
                msg = f"runtime did not end a cancelled invocation in {self.s.cancel_grace:g}s"
                acts.append(Fatal(msg))
            held = [] if self._held is None else [self._held]
            out = routing.timed_out(self._inp, self._budget, self.s.names, now)
            return [*acts, Count("failed", "timeout"), *self._send_all([*held, out], "error")]
        if not ev.ended:
            acts.append(Log("warning", "runtime did not end an abandoned invocation; reconnecting"))
        if why == "send_failed":
            assert self._failure is not None
            self.state = State.SENDING
            return acts + self._send_failed(self._failure, now)
        if why == "cancelled":
            return [*acts, Count("processed", "canceled"), *self._ack()]
        return acts + self._requeue(0.0)  # shutdown: back untouched

    # -- sending and settling -------------------------------------------------------------

    def _send_all(self, outs: list[Outgoing], status: str | None) -> list[Action]:
        """Send `outs` in order, the last one with the ack."""
        self.state = State.SENDING
        self._outbox = deque(outs)
        acts: list[Action] = [] if status is None else [Count("processed", status)]
        return acts + self._next_send()

    def _send(self, out: Outgoing, *, with_ack: bool = False) -> Send | SendWithAck:
        """The send of `out`: to a next actor only if its queue exists (an unknown actor's
        envelope goes to x-sump, naming it); to the end actors a plain send."""
        self._in_flight = out
        must_exist = out.actor not in (self.s.names.sink, self.s.names.sump)
        return SendWithAck(out, must_exist) if with_ack else Send(out, must_exist)

    def _next_send(self) -> list[Action]:
        out = routing.with_fly_count(self._outbox.popleft(), self._flies)
        if self._outbox:
            return [self._send(out)]
        # `send_then_ack` has no delay: a delayed last output takes the two-step path.
        self._last_delayed = out.delay > 0
        return [self._send(out, with_ack=not self._last_delayed)]

    def _sent(self, ev: Sent, now: float) -> list[Action]:
        if self._outbox:
            return self._next_send()
        acts: list[Action] = []
        if self._sumping:
            acts = [
                Log(
                    "error",
                    "outputs undeliverable; message sent to sump",
                    {"reason": self._sump_reason},
                ),
                Count("failed", "routing_error"),
            ]
        # Sent answers the last SendWithAck (acked with it) or the last delayed Send (ack now).
        if self._last_delayed:
            return acts + self._ack()
        self.state, self.outcome = State.DONE, "ack"
        return acts

    def _send_failed(self, ev: SendFailed, now: float) -> list[Action]:
        self._outbox.clear()
        if ev.lease_lost:
            self.state, self.outcome = State.DONE, "lease_lost"
            return [Log("warning", "lease lost before the ack; another consumer has it")]
        permanent = ev.too_large or ev.missing
        if not self._sumping and (permanent or self._attempt >= MAX_SEND_ATTEMPTS):
            self._sumping = True
            reason = "RoutingError"
            if ev.missing:
                actor = "?" if self._in_flight is None else self._in_flight.actor
                msg = f"routed to unknown actor {actor!r}: {ev.error}"
                reason = "UnknownActor"
            elif ev.too_large:
                msg = f"an output is too large for the transport: {ev.error}"
            else:
                msg = f"sending outputs failed {self._attempt} times: {ev.error}"
            self._sump_reason = msg
            parsed = routing.parse_message(self._body, self.s.names, now)
            out = (
                parsed
                if isinstance(parsed, Outgoing)
                else routing.sump(parsed, msg, reason, self.s.names, now)
            )
            return self._send_all([out], None)
        log = Log(
            "error",
            "sending outputs failed; message will be redelivered",
            {"error": ev.error, "attempt": self._attempt},
        )
        return [log, *self._requeue(REQUEUE_ON_FAILURE)]

    def _ack(self) -> list[Action]:
        self.state, self.outcome = State.DONE, "ack"
        return [Ack()]

    def _requeue(self, delay: float) -> list[Action]:
        self.state, self.outcome = State.DONE, "requeue"
        return [Requeue(delay)]


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
