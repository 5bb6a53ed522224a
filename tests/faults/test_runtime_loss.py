"""kill -9 of the runtime mid-stream: the envelope goes to x-sump with the reason, and the
sidecar serves again as soon as a runtime is back."""

from __future__ import annotations

import random
import time
import uuid

import anyio
import msgspec
import pytest

from .conftest import transport_env
from .knobs import TRIALS
from .procs import Mesh, QueueClient, make_envelope, wait_for
from .results import Recorder
from .test_crash import read_trace

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_kill9_runtime_mid_stream_goes_to_sump_then_serves_again(
    mesh: Mesh, recorder: Recorder, fault_seed: int
) -> None:
    rng = random.Random(f"{fault_seed}/runtime-kill")
    trials = max(3, TRIALS // 20)
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    trace = mesh.root / "trace"
    back_in: list[float] = []
    reasons: list[str] = []
    with anyio.fail_after(60 + 20 * trials):
        async with QueueClient(t.config) as qc:
            runtime = await mesh.runtime("tests.faults.handlers:long_stream", sock)
            sidecar = mesh.sidecar("a", sock, t.env)
            for n in range(trials):
                victim = str(uuid.uuid4())
                await qc.send("a", [make_envelope("a", {"n": n}, id=victim)])
                await wait_for(
                    lambda v=victim: any(s == "S" and e == v for s, e, _ in read_trace(trace)),
                    30,
                    "the handler to start streaming",
                )
                await anyio.sleep(rng.uniform(0.05, 0.5))  # mid-stream: FLYs every 10 ms
                runtime.kill()

                sumped: list[bytes] = []

                async def sump_has(v: str = victim, got: list[bytes] = sumped) -> bool:
                    got += await qc.drain("x-sump", wait=0.2)
                    return any(msgspec.json.decode(b)["id"] == v for b in got)

                deadline = time.monotonic() + 15
                while not await sump_has():
                    assert time.monotonic() < deadline, "the envelope never reached x-sump"
                env = next(e for b in sumped if (e := msgspec.json.decode(b))["id"] == victim)
                status = env["status"]
                assert status["phase"] == "failed", status
                reasons.append(f"{status['reason']}: {status['error']['message']}")
                assert status["error"]["message"], "x-sump must say why"
                assert env["payload"] is not None
                assert sidecar.alive, sidecar.output()

                # A runtime comes back: the sidecar must pick up the next envelope.
                runtime = await mesh.runtime("tests.faults.handlers:long_stream", sock)
                ready_at = time.monotonic()
                probe = str(uuid.uuid4())
                await qc.send("a", [make_envelope("a", {"probe": n}, id=probe)])
                await wait_for(
                    lambda p=probe: any(s == "S" and e == p for s, e, _ in read_trace(trace)),
                    30,
                    "the sidecar to invoke the restarted runtime",
                )
                back_in.append(time.monotonic() - ready_at)
                runtime.kill()  # the probe dies too: drain its x-sump entry next round
                deadline = time.monotonic() + 15
                while not await sump_has(probe):
                    assert time.monotonic() < deadline, "the probe never reached x-sump"
                runtime = await mesh.runtime("tests.faults.handlers:long_stream", sock)
            assert not await qc.drain("x-sink", wait=0.2), "nothing may claim success"
    recorder.row(
        "crash",
        "kill -9 runtime mid-stream (sqlite)",
        trials * 2,
        f"all {trials * 2} envelopes in x-sump with the reason; sidecar invoked the restarted "
        f"runtime within {max(back_in):.2f}s (worst)",
        reasons=sorted(set(reasons)),
        seconds_to_serve_again=[round(x, 3) for x in back_in],
    )
