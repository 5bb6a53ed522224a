"""Handlers that never return: cancelled at the timeout (x-sink failed/Timeout), or, when
nothing can cancel them, the sidecar gives up after its grace period without losing the
envelope."""

from __future__ import annotations

import time
import uuid

import anyio
import msgspec
import pytest

from .conftest import transport_env
from .procs import Mesh, QueueClient, make_envelope
from .results import Recorder
from .test_crash import read_trace

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def _sink(qc: QueueClient, n: int, limit: float) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + limit
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)}/{n} reached x-sink: {got}"
        got += [msgspec.json.decode(b) for b in await qc.drain("x-sink", wait=0.2)]
    return got


@pytest.mark.parametrize("handler", ["hang_async", "hang_sync"])
async def test_never_returning_handler_is_cancelled_at_the_timeout(
    handler: str, mesh: Mesh, recorder: Recorder
) -> None:
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    n = 3
    with anyio.fail_after(90):
        async with QueueClient(t.config) as qc:
            await mesh.runtime(f"tests.faults.handlers:{handler}", sock)
            sidecar = mesh.sidecar("a", sock, {**t.env, "ASYA_RESILIENCY_ACTOR_TIMEOUT": "1s"})
            ids = [str(uuid.uuid4()) for _ in range(n)]
            t0 = time.monotonic()
            await qc.send("a", [make_envelope("a", {"id": i}, id=i) for i in ids])
            got = await _sink(qc, n, 60)
            took = time.monotonic() - t0
            assert sorted(e["id"] for e in got) == sorted(ids)  # type: ignore[type-var]
            for e in got:
                status = e["status"]
                assert isinstance(status, dict)
                assert (status["phase"], status["reason"]) == ("failed", "Timeout"), status
            assert sidecar.alive, sidecar.output()
            if handler == "hang_async":
                # Cancelled for real: the handler's `finally` ran for every envelope.
                cancelled = {e for s, e, _ in read_trace(mesh.root / "trace") if s == "C"}
                assert cancelled >= set(ids)
    recorder.row(
        "hang",
        f"{handler}: handler never returns (timeout 1s, concurrency 1)",
        n,
        f"all {n} to x-sink failed/Timeout in {took:.1f}s total; sidecar kept serving"
        + ("; handler's finally ran" if handler == "hang_async" else "; thread abandoned"),
    )


async def test_uncancellable_runtime_makes_the_sidecar_exit_without_losing_the_envelope(
    mesh: Mesh, recorder: Recorder
) -> None:
    """`async def` + time.sleep blocks the runtime's loop: `cancel` is never answered."""
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    with anyio.fail_after(120):
        async with QueueClient(t.config) as qc:
            runtime = await mesh.runtime("tests.faults.handlers:block_loop", sock)
            sidecar = mesh.sidecar(
                "a",
                sock,
                {**t.env, "ASYA_RESILIENCY_ACTOR_TIMEOUT": "1s", "ASYA_CANCEL_GRACE": "2s"},
            )
            victim = str(uuid.uuid4())
            t0 = time.monotonic()
            await qc.send("a", [make_envelope("a", {"id": victim, "seconds": 3600}, id=victim)])
            rc = await sidecar.wait_exit(30)
            took = time.monotonic() - t0
            assert rc != 0, sidecar.output()
            assert took >= 3.0 - 0.5, f"exited after {took:.1f}s, before timeout + grace"
            # Not lost: the verdict is published (x-sink failed/Timeout) before the exit.
            got = await _sink(qc, 1, 10)
            assert got[0]["id"] == victim
            status = got[0]["status"]
            assert isinstance(status, dict)
            assert (status["phase"], status["reason"]) == ("failed", "Timeout"), status
            assert (await qc.depths()).get(qc.q("a"), 0) == 0, "the input must be acked"
            assert "did not end" in sidecar.output()
            runtime.kill()
    recorder.row(
        "hang",
        "async handler blocking its loop (cancel never answered; timeout 1s, grace 2s)",
        1,
        f"sidecar exited {rc} after {took:.1f}s (timeout + grace); envelope in x-sink "
        "failed/Timeout, input acked",
    )
