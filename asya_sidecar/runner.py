"""The sidecar process: one task group owning the workers, the gateway client and /metrics.

Shutdown (SIGTERM/SIGINT): stop taking envelopes, let in-flight ones finish within the grace
period, then cancel (requeue) the rest, and return normally (exit 0).
"""

from __future__ import annotations

import signal
from typing import Final

import anyio
import anyio.abc
import structlog

from asya_mesh.transports import Transport, queue_name

from .config import SidecarConfig
from .endactor import run_end_worker
from .gateway import gateway_client
from .metrics import Metrics, serve_metrics
from .worker import Lifecycle, RuntimeHung, Worker

log = structlog.get_logger("asya.sidecar")

#: While no worker has a runtime connection, say what we wait for this often.
WAITING_LOG_EVERY: Final = 10.0


async def _on_signals(life: Lifecycle, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutting down: draining in-flight envelopes", signal=signum, grace=grace)
            life.begin_shutdown()
            break
    await anyio.sleep(grace)
    log.warning("shutdown grace over: requeueing envelopes still in flight")
    life.abort_inflight()


async def _say_what_we_wait_for(metrics: Metrics, path: str, every: float) -> None:
    """At INFO, now and every `every` seconds while no worker is connected to the runtime."""
    while True:
        if metrics.connected == 0:
            log.info("waiting for the runtime", socket=path, every=every)
        await anyio.sleep(every)


async def run_sidecar(
    cfg: SidecarConfig,
    transport: Transport,
    *,
    metrics: Metrics | None = None,
    handle_signals: bool = True,
    task_status: anyio.abc.TaskStatus[Lifecycle] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until shutdown. Workers: `cfg.concurrency`, each with its own runtime connection."""
    metrics = metrics or Metrics(cfg.transport.kind)
    if not cfg.is_end_actor:
        metrics.runtime_path = cfg.socket_path  # /health: 503 until a worker is connected
    life = Lifecycle()
    # Declared before anything reports ready: from then on a gateway's create or a peer's
    # `must_exist` send finds this actor (an undeclared queue means "unknown actor").
    await transport.declare(queue_name(cfg.namespace, cfg.actor_name))
    async with (
        gateway_client(
            metrics,
            default_url=cfg.gateway_url,
            buffer=cfg.fly_buffer,
            preflight_timeout=cfg.preflight_timeout,
            token=cfg.gateway_token,
            status_linger=cfg.status_linger,
            event_stream=cfg.event_stream,
        ) as gw,
        anyio.create_task_group() as tg,
    ):
        if cfg.metrics_addr:
            try:
                port = await tg.start(serve_metrics, metrics, cfg.metrics_addr)
                log.info("metrics listening", addr=cfg.metrics_addr, port=port)
            except OSError as exc:
                # Several sidecars on one machine with the default address: serving the queue
                # matters more than serving /metrics, so carry on without it (loudly).
                log.error("metrics disabled: cannot listen", addr=cfg.metrics_addr, error=str(exc))
        if handle_signals:
            tg.start_soon(_on_signals, life, cfg.shutdown_grace)
        if not cfg.is_end_actor:
            tg.start_soon(_say_what_we_wait_for, metrics, cfg.socket_path, WAITING_LOG_EVERY)
        log.info(
            "sidecar started",
            actor=cfg.actor_name,
            queue=queue_name(cfg.namespace, cfg.actor_name),
            end=cfg.is_end_actor,
            concurrency=cfg.concurrency,
            transport=cfg.transport.kind,
        )
        task_status.started(life)
        async with anyio.create_task_group() as workers:
            for _ in range(cfg.concurrency):
                w = Worker(cfg, transport, gw, metrics, life)
                workers.start_soon(run_end_worker if cfg.is_end_actor else Worker.run, w)
        log.info("sidecar stopped")
        tg.cancel_scope.cancel()


__all__ = ["WAITING_LOG_EVERY", "RuntimeHung", "run_sidecar"]
