"""SIGTERM under load, to sidecars and to runtimes: in-flight envelopes finish or are
requeued; nothing is lost, nothing is failed for it."""

from __future__ import annotations

import signal
import time
import uuid

import anyio
import msgspec
import pytest

from .conftest import transport_env
from .knobs import TRIALS
from .procs import Mesh, Proc, QueueClient, make_envelope, wait_for
from .results import Recorder
from .test_crash import Collector, read_trace

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow]

ROUNDS = max(3, TRIALS // 20)
_PAUSE = 0.1


@pytest.mark.parametrize("target", ["sidecar", "runtime"])
async def test_sigterm_under_load_loses_nothing(
    target: str, mesh: Mesh, recorder: Recorder
) -> None:
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    trace = mesh.root / "trace"
    env = {**t.env, "ASYA_CONCURRENCY": "8", "ASYA_SHUTDOWN_GRACE": "20s"}
    ids = [str(uuid.uuid4()) for _ in range(40 * ROUNDS)]
    exits: list[tuple[int, float]] = []
    with anyio.fail_after(120 + 30 * ROUNDS):
        async with QueueClient(t.config) as qc:
            await qc.send("a", [make_envelope("a", {"pause": _PAUSE}, id=i) for i in ids])
            runtime = await mesh.runtime("tests.faults.handlers:fanout_stream", sock)
            sidecar = mesh.sidecar("a", sock, env)
            collector = Collector(qc)
            for _ in range(ROUNDS):
                since = time.time()
                await wait_for(
                    lambda s=since: (
                        sum(1 for st, _, at in read_trace(trace) if st == "S" and at > s) >= 8
                    ),
                    30,
                    "envelopes in flight",
                )
                victim: Proc = sidecar if target == "sidecar" else runtime
                t0 = time.monotonic()
                victim.signal(signal.SIGTERM)
                rc = await victim.wait_exit(30)
                exits.append((rc, time.monotonic() - t0))
                assert rc == 0, f"{target} exited {rc} on SIGTERM:\n{victim.output()[-2000:]}"
                if target == "sidecar":
                    sidecar = mesh.sidecar("a", sock, env)
                else:
                    runtime = await mesh.runtime("tests.faults.handlers:fanout_stream", sock)
                await collector.poll()
            deadline = time.monotonic() + 90
            expected = set(ids)

            def accounted() -> set[str]:
                sumped = {msgspec.json.decode(b)["id"] for b in collector.sump}
                return (collector.sink.keys() | sumped) & expected

            while accounted() != expected and time.monotonic() < deadline:
                await collector.poll(wait=0.2)
    lost = expected - accounted()
    failed = [
        e["id"]
        for envs in collector.sink.values()
        for e in envs
        if e["status"]["phase"] != "succeeded"
    ]
    recorder.row(
        "shutdown",
        f"SIGTERM to the {target} with 8 envelopes in flight (grace 20s)",
        ROUNDS,
        f"{len(ids)} inputs: {len(lost)} lost, {len(collector.sump)} in flight sent to x-sump, "
        f"{len(failed)} failed; exits {sorted({rc for rc, _ in exits})} within "
        f"{max(s for _, s in exits):.1f}s",
        exit_codes=[rc for rc, _ in exits],
        exit_seconds=[round(s, 2) for _, s in exits],
    )
    assert not collector.sump, (
        f"SIGTERM to the {target} sent {len(collector.sump)} in-flight envelopes to x-sump, "
        f"e.g. {collector.sump[0][:300]!r}"
    )
    assert not lost, f"{len(lost)} lost"
    assert not failed, f"failed: {failed[:3]}"
