"""`EnvelopeMachine`'s state and how a delivery ends: cancel, send the outputs, ack or requeue."""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

from asya_runtime.wire import Envelope, Error

from . import routing
from .envelope_io import (
    Ack,
    Action,
    CancelDone,
    CancelInvocation,
    Cancelled,
    Count,
    Fatal,
    Log,
    Requeue,
    Send,
    SendFailed,
    SendWithAck,
    Sent,
    Shutdown,
    TimedOut,
)
from .resiliency import Resiliency
from .routing import Names, Outgoing

MAX_SEND_ATTEMPTS: Final = 5  # deliveries whose outputs all failed to send, then x-sump
REQUEUE_ON_FAILURE: Final = 1.0  # seconds before a message whose outputs failed returns


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


class Settling:
    """The state of one delivery and the half of its machine that ends it: cancelling,
    sending and settling. `EnvelopeMachine` adds the half that runs the handler."""

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

    # -- cancelling -----------------------------------------------------------------------

    def _cancel(
        self, why: Literal["timeout", "send_failed", "shutdown", "cancelled"]
    ) -> list[Action]:
        self._after_cancel = why
        self.state = State.CANCELLING
        return [CancelInvocation()]

    def _timed_out(self, ev: TimedOut, now: float) -> list[Action]:
        return self._cancel("timeout")

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


__all__ = [
    "MAX_SEND_ATTEMPTS",
    "REQUEUE_ON_FAILURE",
    "EnvelopeStateError",
    "Settings",
    "Settling",
    "State",
]
