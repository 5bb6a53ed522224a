"""kill -9 of sidecars under load, and of a runtime mid-stream: nothing lost, nothing stuck.

Sidecar kills: two sidecars (concurrency 8 each, each beside its own runtime) consume one queue
while the test keeps it topped up; at randomized times (seeded) one of them is killed with
SIGKILL and restarted. Which point of processing each kill hit is read from two traces the
sidecar cannot fake: the pre-flight GET it makes to its (stand-in) gateway before invoking, and
the handler's own step trace (start, before emit #0, before emit #1, returned).
"""

from __future__ import annotations

import collections
import random
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from asya_sidecar.routing import fanout_id

from .conftest import transport_env
from .fakegw import FakeGateway, fake_gateway
from .knobs import TRIALS
from .procs import Mesh, Proc, QueueClient, make_envelope
from .results import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

POINTS = ("before_invoke", "mid_stream", "between_fanout_sends", "before_ack")
_PAUSE = 0.03  # seconds between the handler's steps (the windows a kill can land in)
_CONCURRENCY = 8


def read_trace(path: Path) -> list[tuple[str, str, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], float(parts[2])))
    return out


def classify(
    since: float, kill_at: float, gw: FakeGateway, trace: list[tuple[str, str, float]]
) -> collections.Counter[str]:
    """Envelopes of one sidecar incarnation, by the point of processing the kill caught them."""
    steps: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for req in gw.requests:
        if req.method == "GET" and since <= req.at <= kill_at:
            steps[req.path.rsplit("/", 1)[-1]]["P"] = req.at
    for step, env_id, at in trace:
        if since <= at <= kill_at:
            steps[env_id][step] = at
    hits: collections.Counter[str] = collections.Counter()
    for s in steps.values():
        if "S" not in s:
            if "P" in s:
                hits["before_invoke"] += 1
        elif "E0" not in s:
            hits["mid_stream"] += 1
        elif "E1" not in s:
            hits["between_fanout_sends"] += 1
        elif "R" not in s or s["R"] > kill_at - 0.02:
            hits["before_ack"] += 1  # every output sent (or being sent), input not yet acked
    return hits


class Collector:
    """Everything that reached x-sink and x-sump so far."""

    def __init__(self, qc: QueueClient) -> None:
        self.qc = qc
        self.sink: dict[str, list[Any]] = collections.defaultdict(list)
        self.sump: list[bytes] = []

    async def poll(self, wait: float = 0.01, limit: int = 2000) -> None:
        for body in await self.qc.drain("x-sink", wait=wait, limit=limit):
            env = msgspec.json.decode(body)
            self.sink[env["id"]].append(env)
        self.sump += await self.qc.drain("x-sump", wait=wait, limit=limit)


# SQS (moto) is slow: a fifth of the trials, beyond the "embedded and RabbitMQ".
_TRIALS = {"sqlite": TRIALS, "rabbitmq": TRIALS, "sqs": max(10, TRIALS // 5)}
_EXTRA_ENV = {"sqs": {"ASYA_SQS_VISIBILITY_TIMEOUT": "5s", "ASYA_SQS_WAIT_TIME_SECONDS": "1"}}


@pytest.mark.parametrize("kind", ["sqlite", "rabbitmq", "sqs"])
async def test_kill9_sidecar_under_load_loses_nothing(
    kind: str, mesh: Mesh, recorder: Recorder, fault_seed: int
) -> None:
    rng = random.Random(f"{fault_seed}/{kind}")
    t = transport_env(kind, mesh.root)
    inputs: dict[str, Any] = {}
    kills: list[dict[str, Any]] = []
    t0 = time.time()
    async with (
        fake_gateway() as gw0,
        fake_gateway() as gw1,
        QueueClient(t.config) as qc,
    ):
        gws = (gw0, gw1)
        traces = [mesh.root / f"trace{i}" for i in (0, 1)]
        socks = [mesh.root / f"s{i}" for i in (0, 1)]
        for i in (0, 1):
            await mesh.runtime(
                "tests.faults.handlers:fanout_stream",
                socks[i],
                {"ASYA_FAULT_TRACE": str(traces[i])},
                name=f"runtime{i}",
            )
        sidecars: list[Proc] = []
        since = [0.0, 0.0]

        def start(i: int) -> Proc:
            since[i] = time.time()
            return mesh.sidecar(
                "a",
                socks[i],
                {
                    **t.env,
                    **_EXTRA_ENV.get(kind, {}),
                    "ASYA_CONCURRENCY": str(_CONCURRENCY),
                    "ASYA_GATEWAY_URL": gws[i].url,
                },
                name=f"sidecar{i}",
            )

        sidecars = [start(0), start(1)]

        async def top_up() -> None:
            # A fixed supply per kill, not "up to a depth": on SQLite a killed sidecar's leases
            # stay counted (and invisible) for the lease time, so depth says nothing about work.
            batch = []
            for _ in range(3 * _CONCURRENCY):
                env_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                inputs[env_id] = {"pause": _PAUSE, "n": len(inputs)}
                batch.append(make_envelope("a", inputs[env_id], id=env_id))
            await qc.send("a", batch)

        def warm(i: int) -> bool:
            return any(step == "S" and at > since[i] for step, _, at in read_trace(traces[i]))

        collector = Collector(qc)
        with anyio.fail_after(600):
            while len(kills) < _TRIALS[kind]:
                await top_up()
                await collector.poll()
                await anyio.sleep(rng.uniform(0.05, 0.6))
                candidates = [i for i in (0, 1) if warm(i)]
                if not candidates:
                    continue
                i = rng.choice(candidates)
                sidecars[i].kill()
                kill_at = time.time()
                hits = classify(since[i], kill_at, gws[i], read_trace(traces[i]))
                kills.append({"sidecar": i, "at": round(kill_at - t0, 3), "hits": dict(hits)})
                sidecars[i] = start(i)

            # Let everything settle: every input must end up in x-sink (killed leases come back).
            expected = {eid: {eid, fanout_id(eid, 1)} for eid in inputs}

            def done() -> bool:
                return all(ids <= collector.sink.keys() for ids in expected.values())

            deadline = time.monotonic() + 120
            while not done() and time.monotonic() < deadline:
                await collector.poll(wait=0.2)
            await collector.poll(wait=0.5)  # late duplicates still count

    # -- verdict ---------------------------------------------------------------------------
    points: collections.Counter[str] = collections.Counter()
    kills_hitting: collections.Counter[str] = collections.Counter()
    for k in kills:
        points.update(k["hits"])
        kills_hitting.update(k["hits"].keys())
        if not k["hits"]:
            kills_hitting["idle"] += 1
    missing = [eid for eid, ids in expected.items() if not ids <= collector.sink.keys()]
    allowed = set().union(*expected.values())
    strays = sorted(set(collector.sink) - allowed)
    dup_ids = {eid: envs for eid, envs in collector.sink.items() if len(envs) > 1}
    inconsistent = [
        eid
        for eid, envs in dup_ids.items()
        if any(
            e["payload"] != envs[0]["payload"] or e.get("parent_id") != envs[0].get("parent_id")
            for e in envs
        )
    ]
    duplicates = sum(len(v) - 1 for v in dup_ids.values())
    hit = ", ".join(f"{p.replace('_', ' ')} {kills_hitting[p]}" for p in (*POINTS, "idle"))
    outcome = (
        f"{len(inputs)} inputs, {len(missing)} lost, {duplicates} duplicate deliveries "
        f"(all same ids), {len(collector.sump)} in x-sump; kills that caught envelopes at: {hit}"
    )
    recorder.row(
        "crash",
        f"kill -9 sidecar under load ({kind}, 2 sidecars x concurrency {_CONCURRENCY})",
        len(kills),
        outcome,
        transport=kind,
        inputs=len(inputs),
        lost=len(missing),
        duplicates=duplicates,
        sump=len(collector.sump),
        envelopes_caught_per_point=dict(points),
        kills_hitting_point=dict(kills_hitting),
        seconds_killing=round(kills[-1]["at"], 1) if kills else 0,
        kills=kills,
    )
    assert not missing, f"{len(missing)} envelopes lost, e.g. {missing[:3]} (seed {fault_seed})"
    assert not strays, f"ids nobody should have produced: {strays[:3]}"
    assert not inconsistent, f"duplicates that differ: {inconsistent[:3]}"
    assert not collector.sump, f"x-sump got {collector.sump[:2]!r}"
    if len(kills) >= 50:  # enough random kills that every point must have been hit
        for point in POINTS:
            assert kills_hitting[point] > 0, f"no kill hit {point}: {dict(kills_hitting)}"
