"""Fuzz the queue: random bytes, random JSON, near-valid and valid envelopes onto one actor's
queue, all through one long-lived sidecar + runtime.

Invariant: every message comes out somewhere (x-sink, x-sump, or the next actor's queue), each
x-sump message names the problem and keeps the original, nothing stays stuck in the input
queue, and the sidecar keeps serving.
"""

from __future__ import annotations

import collections
import copy
import time
import uuid
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from .conftest import transport_env
from .knobs import FUZZ_BATCH, FUZZ_RUNS, SEED
from .procs import Mesh, QueueClient
from .results import Recorder
from .test_fuzz_runtime import json_values

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow]

_VALID: dict[str, Any] = {
    "route": {"prev": [], "curr": "a", "next": []},
    "headers": {},
    "status": {},
    "payload": None,
}
_HEADER_KEYS = [
    "x-asya-gateway-url",
    "x-asya-mesh-status",
    "x-asya-route-override",
    "x-asya-first-attempt",
    "trace-id",
]
_STATUS_KEYS = ["deadline_at", "created_at", "attempt", "max_attempts", "phase"]


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    env = copy.deepcopy(_VALID)
    env["id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    env["payload"] = draw(json_values)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(
                ["drop", "retype", "curr", "next", "header", "status", "route-junk", "id"]
            )
        )
        if what == "drop":
            env.pop(draw(st.sampled_from(["id", "route", "payload", "headers", "status"])), None)
        elif what == "retype":
            env[draw(st.sampled_from(["id", "route", "headers", "status", "parent_id"]))] = draw(
                json_values
            )
        elif what == "curr" and isinstance(env.get("route"), dict):
            env["route"]["curr"] = draw(st.sampled_from(["b", "", "a ", "A"]))
        elif what == "next" and isinstance(env.get("route"), dict):
            env["route"]["next"] = draw(st.lists(st.sampled_from(["b", "c"])))
        elif what == "header" and isinstance(env.get("headers"), dict):
            env["headers"][draw(st.sampled_from(_HEADER_KEYS))] = draw(
                json_values
                | st.sampled_from(
                    ["file:///etc/passwd", "http://", "gopher://x", "off", "http://127.0.0.1:9"]
                )
            )
        elif what == "status" and isinstance(env.get("status"), dict):
            env["status"][draw(st.sampled_from(_STATUS_KEYS))] = draw(
                json_values | st.sampled_from(["2000-01-01T00:00:00Z", "not a date", "9999-99"])
            )
        elif what == "route-junk" and isinstance(env.get("route"), dict):
            env["route"][draw(st.sampled_from(["prev", "curr", "next"]))] = draw(json_values)
        elif what == "id":
            env["id"] = draw(st.sampled_from(["", " ", "\x00", "a" * 300]) | json_values)
    return msgspec.json.encode(env)


@st.composite
def valid(draw: st.DrawFn) -> bytes:
    env = copy.deepcopy(_VALID)
    env["id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    env["payload"] = draw(json_values)
    return msgspec.json.encode(env)


bodies = st.one_of(
    st.tuples(st.just("random bytes"), st.binary(max_size=300)),
    st.tuples(st.just("random JSON"), json_values.map(msgspec.json.encode)),
    st.tuples(st.just("near-valid envelope"), near_valid()),
    st.tuples(st.just("valid envelope"), valid()),
)


async def test_queue_survives_fuzzed_messages(mesh: Mesh, recorder: Recorder) -> None:
    generated: list[tuple[str, bytes]] = []

    @settings(
        max_examples=FUZZ_RUNS,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(bodies, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def collect(batch: list[tuple[str, bytes]]) -> None:
        generated.extend(batch)  # batched: all of them go through one sidecar below

    hseed(SEED)(collect)()
    # hypothesis may replay or shrink examples; what we send is what we count.
    n = len(generated)
    kinds = collections.Counter(k for k, _ in generated)
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    t0 = time.monotonic()
    sink: list[dict[str, Any]] = []
    sump: list[dict[str, Any]] = []
    with anyio.fail_after(600):
        async with QueueClient(t.config) as qc:
            await mesh.runtime("tests.faults.handlers:echo", sock)
            await qc.send("a", [b for _, b in generated])
            sidecar = mesh.sidecar("a", sock, {**t.env, "ASYA_CONCURRENCY": "8"})
            others: dict[str, int] = {}
            while True:
                sink += [msgspec.json.decode(b) for b in await qc.drain("x-sink", wait=0.05)]
                sump += [msgspec.json.decode(b) for b in await qc.drain("x-sump", wait=0.05)]
                depths = await qc.depths()
                others = {
                    q: d
                    for q, d in depths.items()
                    if d and q not in {qc.q("a"), qc.q("x-sink"), qc.q("x-sump")}
                }
                if len(sink) + len(sump) + sum(others.values()) >= n:
                    break
                assert sidecar.alive, sidecar.output()[-3000:]
                await anyio.sleep(0.2)
            took = time.monotonic() - t0
            assert depths.get(qc.q("a"), 0) == 0, "messages stuck in the input queue"
            assert sidecar.alive
    assert len(sink) + len(sump) + sum(others.values()) == n
    reasons = collections.Counter(e["status"]["reason"] for e in sump)
    for e in sump:
        err = e["status"]["error"]
        assert err["message"], e
        # The original is kept: the raw body for unparsable messages, the envelope otherwise.
        assert "original_body" in e["payload"] or e["payload"] is not None, e
    sink_phases = collections.Counter(
        f"{e['status']['phase']}/{e['status'].get('reason')}" for e in sink
    )
    recorder.row(
        "fuzz",
        "queue: random bytes, random JSON, near-valid and valid envelopes onto an actor's queue",
        n,
        f"all {n} came out (x-sink {len(sink)}, x-sump {len(sump)}, next actors "
        f"{sum(others.values())}); every x-sump names the problem; sidecar kept serving",
        cases_by_kind=dict(kinds),
        sump_reasons=dict(reasons),
        sink_phases=dict(sink_phases),
        seconds=round(took, 1),
    )
