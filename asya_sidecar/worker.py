"""The thin I/O shell around `envelope.EnvelopeMachine`: one worker = one runtime connection =
one envelope at a time.

For each delivery the worker feeds the machine what happened (the delivery, the pre-flight
answer, each frame as it arrives, the timeout, send results, runtime loss, shutdown) and
carries out what it returns: queue sends (awaited, durable, shielded), ack/requeue, gateway
events (never awaited), the invocation under one `move_on_after(timeout)`, cancel-and-drain.
No decision is taken here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import anyio
import anyio.abc
import structlog

from asya_mesh.events import FlyEvent
from asya_mesh.transports import Delivery, LeaseLost, QueueMissing, Transport, queue_name
from asya_mesh.transports.errors import MessageTooLarge, TransportError

from . import envelope as E
from . import routing
from .config import SidecarConfig
from .forwarder import EnvelopeEvents, NullEvents
from .gateway import GatewayClient
from .lease import LeaseKeeper
from .metrics import Metrics
from .routing import Names, Outgoing
from .runtime_client import (
    InvokeNotDelivered,
    RuntimeConnection,
    RuntimeLost,
    RuntimeUnavailable,
    connect,
    wait_ready,
)

log = structlog.get_logger("asya.sidecar")

_RECEIVE_WAIT: Final = 1.0
_LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class RuntimeHung(Exception):
    """The runtime did not answer `end` after a cancel within the grace period."""


class Lifecycle:
    """Shutdown as the workers see it, owned by the runner: `begin_shutdown()` interrupts idle
    waits (no new envelopes), `abort_inflight()` cancels envelopes in flight (requeued)."""

    def __init__(self) -> None:
        self.stopping = anyio.Event()
        self._idle: set[anyio.CancelScope] = set()
        self._busy: set[anyio.CancelScope] = set()

    def begin_shutdown(self) -> None:
        self.stopping.set()
        for scope in list(self._idle):
            scope.cancel()

    def abort_inflight(self) -> None:
        for scope in list(self._busy):
            scope.cancel()

    @contextmanager
    def idle(self) -> Iterator[anyio.CancelScope]:
        """A scope for a wait that shutdown interrupts (receive, waiting for the runtime)."""
        with anyio.CancelScope() as scope:
            if self.stopping.is_set():
                scope.cancel()
            self._idle.add(scope)
            try:
                yield scope
            finally:
                self._idle.discard(scope)

    @contextmanager
    def busy(self) -> Iterator[anyio.CancelScope]:
        """A scope for one envelope in flight, cancelled when the shutdown grace is over."""
        with anyio.CancelScope() as scope:
            self._busy.add(scope)
            try:
                yield scope
            finally:
                self._busy.discard(scope)


class Worker:
    """Takes envelopes one by one and carries out their machines' actions."""

    def __init__(
        self,
        cfg: SidecarConfig,
        transport: Transport,
        gateway: GatewayClient,
        metrics: Metrics,
        life: Lifecycle,
        *,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg, self.transport, self.gateway, self.metrics = cfg, transport, gateway, metrics
        self.life = life
        self.rand, self.clock = rand, clock
        self.queue = queue_name(cfg.namespace, cfg.actor_name)
        self.settings = E.Settings(
            names=Names(actor=cfg.actor_name, sink=cfg.sink, sump=cfg.sump),
            actor_timeout=cfg.actor_timeout,
            cancel_grace=cfg.cancel_grace,
            resiliency=cfg.resiliency,
            gateway_url=gateway.default_url,
        )

    async def receive(self) -> Delivery | None:
        if self.life.stopping.is_set():
            return None
        with self.life.idle():
            t0 = time.perf_counter()
            d = await self.transport.receive(self.queue, wait=_RECEIVE_WAIT)
            if d is not None:
                m = self.metrics
                m.child(m.receive_time, self.queue, m.transport).observe(time.perf_counter() - t0)
            return d
        return None

    async def run(self) -> None:
        """(Re)connect to the runtime, then take envelopes until shutdown."""
        path = self.cfg.socket_path
        while not self.life.stopping.is_set():
            with self.life.idle() as wait_scope:
                await wait_ready(path, self.cfg.runtime_ready_timeout)
            if wait_scope.cancelled_caught:
                return
            try:
                async with connect(path) as conn:
                    self.metrics.connected += 1
                    try:
                        await self._serve(conn)
                    finally:
                        self.metrics.connected -= 1
            except RuntimeUnavailable as exc:
                log.info("runtime not available; waiting", error=str(exc))

    async def _serve(self, conn: RuntimeConnection) -> None:
        keeper = LeaseKeeper(self.cfg.transport.lease_seconds)
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.run)
            while not self.life.stopping.is_set() and not conn.closed:
                delivery = await self.receive()
                if delivery is None:
                    continue
                if not conn.alive():
                    # The runtime went away while we were idle: nothing has started, so the
                    # envelope goes back untouched and we take no more until it is back.
                    with anyio.CancelScope(shield=True):
                        await _quietly(delivery.requeue(0.0))
                    break
                keeper.delivery = delivery
                try:
                    fatal = await self.process(delivery, conn)
                finally:
                    keeper.delivery = None
                if fatal is not None:
                    self.metrics.set_unhealthy(fatal)
                    raise RuntimeHung(fatal)
            tg.cancel_scope.cancel()

    async def process(self, delivery: Delivery, conn: RuntimeConnection | None) -> str | None:
        """One delivery through its machine, until acked or requeued; the `Fatal` message if
        the sidecar must stop afterwards."""
        m = self.metrics
        t0 = time.perf_counter()
        m.child(m.received, self.queue, m.transport).inc()
        m.child(m.size, "received").observe(len(delivery.body))
        m.active.inc()
        run = _Run(self, delivery, conn)
        try:
            with structlog.contextvars.bound_contextvars(actor=self.cfg.actor_name):
                with self.life.busy() as scope:
                    await run.carry(run.feed(E.Delivered(delivery.body, delivery.attempt)))
                if scope.cancelled_caught and run.machine.state is not E.State.DONE:
                    # The shutdown grace is over: stop the handler, give the message back.
                    with anyio.CancelScope(shield=True):
                        await run.carry(run.feed(E.Shutdown()))
        finally:
            run.events.close()
            m.active.dec()
            m.child(m.processing, self.queue).observe(time.perf_counter() - t0)
        return run.fatal


class _Run:
    """The shell state of one delivery: its machine, event stream, connection."""

    def __init__(self, w: Worker, delivery: Delivery, conn: RuntimeConnection | None) -> None:
        self.w, self.delivery, self.conn = w, delivery, conn
        self.machine = E.EnvelopeMachine(w.settings, w.rand)
        self.events: EnvelopeEvents = NullEvents()
        self._events_open = False
        self.fatal: str | None = None

    def feed(self, event: E.EnvelopeEvent) -> list[E.Action]:
        return self.machine.handle(event, self.w.clock())

    async def carry(self, actions: list[E.Action]) -> None:
        """Carry out `actions`, feeding each answer back, until nothing awaits an answer."""
        while actions:
            pending = self._carry_now(actions)
            actions = [] if pending is None else await self._perform(pending)

    def _carry_now(self, actions: list[E.Action]) -> E.Action | None:
        """Carry out what needs no waiting (reports, counts, logs); returns the one action
        that awaits an answer, if any."""
        pending: E.Action | None = None
        for a in actions:
            if isinstance(a, E.Report):
                self._report(a)
            elif isinstance(a, E.Count):
                m = self.w.metrics
                m.child(getattr(m, a.metric), self.w.queue, a.label).inc()
            elif isinstance(a, E.Log):
                eid = self.machine.envelope_id
                log.log(_LEVELS[a.level], a.message, envelope_id=eid, **a.fields)
            elif isinstance(a, E.Fatal):
                self.fatal = a.message
                self.w.metrics.set_unhealthy(a.message)
            else:
                pending = a
        return pending

    def _report(self, a: E.Report) -> None:
        if not self._events_open:
            self._events_open = True
            m = self.machine
            assert m.envelope_id is not None
            self.events = self.w.gateway.open(m.gateway, m.envelope_id)
        if self.events.put(a.event) and isinstance(a.event, FlyEvent):
            self.machine.fly_accepted()

    async def _perform(self, a: E.Action) -> list[E.Action]:
        d = self.delivery
        if isinstance(a, E.Send | E.SendWithAck):
            try:
                await self._send(
                    a.out, with_ack=isinstance(a, E.SendWithAck), must_exist=a.must_exist
                )
            except LeaseLost as exc:
                return self.feed(E.SendFailed(str(exc), lease_lost=True))
            except QueueMissing as exc:
                return self.feed(E.SendFailed(str(exc), missing=True))
            except TransportError as exc:
                too_large = isinstance(exc, MessageTooLarge)
                return self.feed(E.SendFailed(str(exc), too_large=too_large))
            return self.feed(E.Sent())
        if isinstance(a, E.Ack):
            with anyio.CancelScope(shield=True):
                await _quietly(d.ack())
            return []
        if isinstance(a, E.Requeue):
            with anyio.CancelScope(shield=True):
                await _quietly(d.requeue(a.delay))
            return []
        if isinstance(a, E.ReportPause):
            ok = await self.w.gateway.report_now(a.gateway, a.envelope_id, a.event)
            return self.feed(E.PauseStored(ok))
        if isinstance(a, E.Preflight):
            state = await self.w.gateway.preflight(a.gateway, a.envelope_id)
            return self.feed(E.PreflightAnswered(state))
        if isinstance(a, E.StartInvoke):
            return await self._invoke(a)
        if isinstance(a, E.CancelInvocation):
            return self.feed(E.CancelDone(await self._cancel_and_drain()))
        raise AssertionError(f"unknown action {a!r}")

    async def _invoke(self, a: E.StartInvoke) -> list[E.Action]:
        conn, m, q, mach = self.conn, self.w.metrics, self.w.queue, self.machine
        assert conn is not None
        t0 = time.perf_counter()
        # The gateway's feed interrupts the frame loop when the task stops there (step 6).
        stopped: list[str] = []
        feed_scope = anyio.CancelScope()

        def on_stop(status: str) -> None:
            stopped.append(status)
            feed_scope.cancel()

        unwatch = (
            self.w.gateway.watch(mach.gateway, a.envelope.id, on_stop)
            if mach.gateway is not None and a.envelope.id
            else None
        )
        try:
            try:
                await conn.start(a.envelope)
            except InvokeNotDelivered as exc:
                return self.feed(E.InvokeFailed(str(exc)))
            with anyio.move_on_after(a.timeout) as scope, feed_scope:
                while mach.running:
                    try:
                        # Frames already read come without a wait (a FLY burst arrives many
                        # per read); the read that follows them is the loop's checkpoint.
                        frame = conn.buffered_frame()
                        if frame is None:
                            frame = await conn.next_frame()
                    except RuntimeLost as exc:
                        return self.feed(E.RuntimeGone(str(exc)))
                    actions = self.feed(E.FrameArrived(frame))
                    if not mach.running:
                        return actions  # carried outside the timeout's scope
                    pending = self._carry_now(actions)  # a FLY's report: nothing to await
                    if pending is not None:
                        await self.carry(await self._perform(pending))
            if stopped and mach.running:
                return self.feed(E.Cancelled(stopped[0]))
            if scope.cancelled_caught and mach.running:
                return self.feed(E.TimedOut())
            return []
        finally:
            if unwatch is not None:
                unwatch()
            m.child(m.runtime, q).observe(time.perf_counter() - t0)

    async def _cancel_and_drain(self) -> bool:
        """Send `cancel` and discard frames up to `end`, within the cancel grace (shielded:
        also runs when shutdown cancelled us). False if the runtime did not answer in time;
        the connection is then marked closed so that the worker reconnects."""
        conn = self.conn
        if conn is None or conn.closed:
            return True
        with anyio.move_on_after(self.w.cfg.cancel_grace, shield=True) as grace:
            await conn.cancel()
            try:
                await conn.drain_to_end()
            except RuntimeLost:
                return True
        if grace.cancelled_caught:
            conn.closed = True
            return False
        return True

    async def _send(self, out: Outgoing, *, with_ack: bool, must_exist: bool = False) -> None:
        """Durably send one outgoing envelope (shielded: a half-sent output is not an option)."""
        w, m = self.w, self.w.metrics
        q = queue_name(w.cfg.namespace, out.actor)
        body = routing.encode(out.envelope)
        with anyio.CancelScope(shield=True):
            t0 = time.perf_counter()
            if with_ack:
                await w.transport.send_then_ack([(q, body)], self.delivery, must_exist=must_exist)
            else:
                await w.transport.send(q, body, delay=out.delay, must_exist=must_exist)
        m.child(m.send_time, q, m.transport).observe(time.perf_counter() - t0)
        m.child(m.sent, q, out.kind).inc()
        m.child(m.size, "sent").observe(len(body))


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # ack/requeue failure: the lease expiry redelivers
        log.warning("ack/requeue failed", error=repr(exc))


__all__ = ["Lifecycle", "RuntimeHung", "Worker"]
