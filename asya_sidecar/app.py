"""The sidecar process: one task group owning the workers, the gateway client and /metrics.

Shutdown (SIGTERM/SIGINT): stop taking envelopes, let in-flight ones finish within the grace
period, then cancel (requeue) the rest, and return normally (exit 0).
"""

from __future__ import annotations

import signal

import anyio
import structlog

from asya_mesh.transports import Transport

from .config import SidecarConfig
from .endactor import run_end_worker
from .gateway import gateway_client
from .metrics import Metrics, serve_metrics
from .worker import Sidecar, run_worker

log = structlog.get_logger("asya.sidecar")


async def _on_signals(sc: Sidecar, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutting down: draining in-flight envelopes", signal=signum, grace=grace)
            sc.begin_shutdown()
            break
    await anyio.sleep(grace)
    log.warning("shutdown grace over: requeueing envelopes still in flight")
    sc.abort_inflight()


async def run_sidecar(
    cfg: SidecarConfig,
    transport: Transport,
    *,
    metrics: Metrics | None = None,
    handle_signals: bool = True,
    task_status: anyio.abc.TaskStatus[Sidecar] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until shutdown. Workers: `cfg.concurrency`, each with its own runtime connection."""
    metrics = metrics or Metrics(cfg.transport.kind)
    async with (
        gateway_client(
            metrics,
            default_url=cfg.gateway_url,
            buffer=cfg.fly_buffer,
            preflight_timeout=cfg.preflight_timeout,
        ) as gw,
        anyio.create_task_group() as tg,
    ):
        sc = Sidecar(cfg, transport, gw, metrics)
        if cfg.metrics_addr:
            try:
                port = await tg.start(serve_metrics, metrics, cfg.metrics_addr)
                log.info("metrics listening", addr=cfg.metrics_addr, port=port)
            except OSError as exc:
                # Several sidecars on one machine with the default address: serving the queue
                # matters more than serving /metrics, so carry on without it (loudly).
                log.error("metrics disabled: cannot listen", addr=cfg.metrics_addr, error=str(exc))
        if handle_signals:
            tg.start_soon(_on_signals, sc, cfg.shutdown_grace)
        log.info(
            "sidecar started",
            actor=cfg.actor_name,
            queue=sc.queue,
            end=cfg.is_end_actor,
            concurrency=cfg.concurrency,
            transport=cfg.transport.kind,
        )
        task_status.started(sc)
        async with anyio.create_task_group() as workers:
            for _ in range(cfg.concurrency):
                workers.start_soon(run_end_worker if cfg.is_end_actor else run_worker, sc)
        log.info("sidecar stopped")
        tg.cancel_scope.cancel()
