"""Per-envelope processing: one worker = one runtime connection = one envelope at a time.

The steps of sidecar-gateway.md "Per envelope", carried out with `routing` (pure) deciding and
this module doing the I/O: queue sends (awaited, durable) before the ack, gateway events
(never awaited, except a bounded flush before the envelope's last output goes out), the
invocation under one `move_on_after(min(timeout, deadline left))`. The last emit of an
invocation is held until `end` and sent together with the ack (`Transport.send_then_ack`).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, Final

import anyio
import anyio.abc
import structlog

from asya_mesh.transports import Delivery, LeaseLost, Transport, queue_name
from asya_mesh.transports.errors import MessageTooLarge, TransportError
from asya_runtime.wire import Envelope

from . import routing
from .config import SidecarConfig
from .gateway import GatewayClient
from .invocation import RuntimeHung, invoke, route_data
from .metrics import Metrics
from .routing import Names, Outgoing
from .runtime_client import (
    InvokeNotDelivered,
    RuntimeConnection,
    RuntimeUnavailable,
    connect,
    wait_ready,
)

log = structlog.get_logger("asya.sidecar")

_RECEIVE_WAIT: Final = 1.0
_REQUEUE_ON_FAILURE: Final = 1.0  # seconds before a message whose outputs failed to send returns
_MAX_SEND_ATTEMPTS: Final = 5  # deliveries whose outputs all failed to send, then x-sump


class Sidecar:
    """What every worker shares: configuration, transport, gateway, metrics, shutdown state."""

    def __init__(
        self,
        cfg: SidecarConfig,
        transport: Transport,
        gateway: GatewayClient,
        metrics: Metrics,
        *,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.gateway = gateway
        self.metrics = metrics
        self.names = Names(actor=cfg.actor_name, sink=cfg.sink, sump=cfg.sump)
        self.queue = queue_name(cfg.namespace, cfg.actor_name)
        self.rand = rand
        self.clock = clock
        self.stopping = anyio.Event()
        self.fatal: Exception | None = None  # set when the sidecar must exit non-zero
        self._receiving: set[anyio.CancelScope] = set()
        self._processing: set[anyio.CancelScope] = set()

    def begin_shutdown(self) -> None:
        """Stop taking new envelopes; in-flight ones carry on."""
        self.stopping.set()
        for scope in list(self._receiving):
            scope.cancel()

    def abort_inflight(self) -> None:
        """Grace period over: cancel in-flight envelopes (they are requeued)."""
        for scope in list(self._processing):
            scope.cancel()

    async def receive(self) -> Delivery | None:
        if self.stopping.is_set():
            return None
        with anyio.CancelScope() as scope:
            self._receiving.add(scope)
            try:
                t0 = time.perf_counter()
                d = await self.transport.receive(self.queue, wait=_RECEIVE_WAIT)
                if d is not None:
                    self.metrics.child(
                        self.metrics.receive_time, self.queue, self.metrics.transport
                    ).observe(time.perf_counter() - t0)
                return d
            finally:
                self._receiving.discard(scope)
        return None

    async def send(self, out: Outgoing) -> None:
        """Durably send one outgoing envelope (shielded: a half-sent output is not an option)."""
        q = queue_name(self.cfg.namespace, out.actor)
        body = routing.encode(out.envelope)
        with anyio.CancelScope(shield=True):
            t0 = time.perf_counter()
            await self.transport.send(q, body, delay=out.delay)
        self.metrics.child(self.metrics.send_time, q, self.metrics.transport).observe(
            time.perf_counter() - t0
        )
        self.metrics.child(self.metrics.sent, q, out.kind).inc()
        self.metrics.child(self.metrics.size, "sent").observe(len(body))

    async def send_then_ack(self, out: Outgoing, delivery: Delivery) -> None:
        """Send the last output and ack what produced it, in one call (one transaction on
        SQLite). Outputs with a delay take the two-step path (`send_then_ack` has no delay)."""
        if out.delay:
            await self.send(out)
            with anyio.CancelScope(shield=True):
                await _quietly(delivery.ack())
            return
        q = queue_name(self.cfg.namespace, out.actor)
        body = routing.encode(out.envelope)
        with anyio.CancelScope(shield=True):
            t0 = time.perf_counter()
            await self.transport.send_then_ack([(q, body)], delivery)
        self.metrics.child(self.metrics.send_time, q, self.metrics.transport).observe(
            time.perf_counter() - t0
        )
        self.metrics.child(self.metrics.sent, q, out.kind).inc()
        self.metrics.child(self.metrics.size, "sent").observe(len(body))

    async def settle(self, delivery: Delivery, process: Callable[[], Any]) -> None:
        """Run `process()`; ack after it, requeue if it failed or was cut off by shutdown.

        `process()` may return one last `Outgoing`: it is sent with the ack (`send_then_ack`).
        """
        with anyio.CancelScope() as scope:
            self._processing.add(scope)
            try:
                final = await process()
                if isinstance(final, Outgoing):
                    await self.send_then_ack(final, delivery)
                    return
            except InvokeNotDelivered as exc:
                # The runtime closed (restart, shutdown) before it read the invoke: nothing
                # started, so the message goes back untouched; the worker waits for readiness.
                log.info("runtime not reachable; envelope requeued untouched", error=str(exc))
                with anyio.CancelScope(shield=True):
                    await _quietly(delivery.requeue(0.0))
                return
            except LeaseLost as exc:
                # Our lease lapsed and another consumer has the message: it settles it.
                log.warning("lease lost before the ack; another consumer has it", error=str(exc))
                return
            except TransportError as exc:
                with anyio.CancelScope(shield=True):
                    too_large = isinstance(exc, MessageTooLarge)  # permanent: no redelivery
                    if (too_large or delivery.attempt >= _MAX_SEND_ATTEMPTS) and await self._sump(
                        delivery, exc
                    ):
                        await _quietly(delivery.ack())
                        return
                    log.error(
                        "sending outputs failed; message will be redelivered",
                        error=str(exc),
                        attempt=delivery.attempt,
                    )
                    await _quietly(delivery.requeue(_REQUEUE_ON_FAILURE))
                return
            finally:
                self._processing.discard(scope)
            with anyio.CancelScope(shield=True):
                await _quietly(delivery.ack())
            return
        # Cancelled by the end of the shutdown grace: give the message back untouched.
        with anyio.CancelScope(shield=True):
            await _quietly(delivery.requeue(0.0))

    async def _sump(self, delivery: Delivery, exc: TransportError) -> bool:
        """A message whose outputs keep failing to send (e.g. a destination the broker
        rejects, a payload too large): x-sump instead of redelivering it forever."""
        now = self.clock()
        parsed = routing.parse_message(delivery.body, self.names, now)
        if isinstance(exc, MessageTooLarge):
            msg = f"an output is too large for the transport: {exc}"
        else:
            msg = f"sending outputs failed {delivery.attempt} times: {exc}"
        out = (
            parsed
            if isinstance(parsed, Outgoing)
            else routing.sump(parsed, msg, "RoutingError", self.names, now)
        )
        try:
            await self.send(out)
        except TransportError:
            return False
        log.error("outputs undeliverable; message sent to sump", error=str(exc))
        self.metrics.child(self.metrics.failed, self.queue, "routing_error").inc()
        return True


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # ack/requeue failure: the lease expiry redelivers
        log.warning("ack/requeue failed", error=repr(exc))


async def run_worker(sc: Sidecar) -> None:
    """One worker: (re)connect to the runtime, then take envelopes one by one until shutdown."""
    path = sc.cfg.socket_path
    while not sc.stopping.is_set():
        with anyio.CancelScope() as wait_scope:
            sc._receiving.add(wait_scope)  # shutdown interrupts the wait for the runtime too
            try:
                await wait_ready(path, sc.cfg.runtime_ready_timeout)
            finally:
                sc._receiving.discard(wait_scope)
        if wait_scope.cancelled_caught:
            return
        try:
            async with connect(path) as conn:
                sc.metrics.healthy = True
                await _serve(sc, conn)
        except RuntimeUnavailable as exc:
            log.info("runtime not available; waiting", error=str(exc))


async def _serve(sc: Sidecar, conn: RuntimeConnection) -> None:
    keeper = _LeaseKeeper(sc.cfg.transport.lease_seconds)
    async with anyio.create_task_group() as tg:
        tg.start_soon(keeper.run)
        while not sc.stopping.is_set() and not conn.closed:
            delivery = await sc.receive()
            if delivery is None:
                continue
            if not conn.alive():
                # The runtime went away while we were idle: nothing has started, so the envelope
                # goes back untouched and we take no more until the runtime is back.
                with anyio.CancelScope(shield=True):
                    await _quietly(delivery.requeue(0.0))
                break
            keeper.delivery = delivery
            try:
                await sc.settle(delivery, functools.partial(process, sc, conn, delivery))
            finally:
                keeper.delivery = None
            if sc.fatal is not None:
                raise sc.fatal
        tg.cancel_scope.cancel()


class _LeaseKeeper:
    """Extends the lease of the worker's current message every lease/3 seconds, so a long
    handler is not redelivered. One per worker (not per envelope: no task spawn on the hot
    path); an extension racing with the ack is harmless and only logged."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.delivery: Delivery | None = None
        self._lost: Delivery | None = None  # lease went to another consumer: stop extending

    async def run(self) -> None:
        while True:
            await anyio.sleep(max(self.lease / 3, 0.05))
            d = self.delivery
            if d is None or d is self._lost:
                continue
            try:
                await d.extend(self.lease)
            except LeaseLost as exc:
                self._lost = d
                log.warning(
                    "lease lost: another consumer has this message now; no longer extending",
                    message_id=d.message_id,
                    error=str(exc),
                )
            except Exception as exc:
                log.debug("lease extension failed", error=repr(exc))


async def process(sc: Sidecar, conn: RuntimeConnection, delivery: Delivery) -> Outgoing | None:
    """Every step for one message; returns once all outputs but the returned last one are
    durably sent (the caller sends that one with the ack)."""
    m, names = sc.metrics, sc.names
    t0 = time.perf_counter()
    m.child(m.received, sc.queue, m.transport).inc()
    m.child(m.size, "received").observe(len(delivery.body))
    m.active.inc()
    try:
        parsed = routing.parse_message(delivery.body, names, sc.clock())
        if isinstance(parsed, Outgoing):
            m.child(m.failed, sc.queue, "parse_error").inc()
            log.warning("unparsable message sent to sump", message_id=delivery.message_id)
            await sc.send(parsed)
            return None
        env = parsed
        with structlog.contextvars.bound_contextvars(envelope_id=env.id, actor=names.actor):
            status, final = await _process_envelope(sc, conn, delivery, env)
            m.child(m.processed, sc.queue, status).inc()
            return final
    finally:
        m.active.dec()
        m.child(m.processing, sc.queue).observe(time.perf_counter() - t0)


async def _process_envelope(
    sc: Sidecar, conn: RuntimeConnection, delivery: Delivery, env: Envelope
) -> tuple[str, Outgoing | None]:
    names, m = sc.names, sc.metrics
    assert env.id is not None
    if not routing.serves(env, names.actor):
        m.child(m.failed, sc.queue, "route_mismatch").inc()
        await sc.send(routing.route_mismatch(env, names, sc.clock()))
        return "error", None
    gw = sc.gateway.resolve(env.headers)
    if gw is not None:
        state = await sc.gateway.preflight(gw, env.id)
        out = routing.preflight(env, state, names, sc.clock()) if state else None
        if out is not None:
            await sc.send(out)
            return f"preflight_{state}", None
    left = routing.deadline_left(env, sc.clock())
    if left is not None and left <= 0:
        m.child(m.failed, sc.queue, "sla_timeout").inc()
        await sc.send(routing.deadline_expired(env, names, sc.clock()))
        return "sla_expired", None
    events = sc.gateway.open(gw, env.id)
    try:
        events.status("received", route_data(env, names.actor))
        inp = routing.prepare_input(env, names, sc.clock())
        events.status("processing", route_data(env, names.actor))
        timeout = sc.cfg.actor_timeout if left is None else min(sc.cfg.actor_timeout, left)
        return await invoke(sc, conn, env, inp, timeout, events)
    finally:
        events.close()


__all__ = ["RuntimeHung", "Sidecar", "process", "run_worker"]
