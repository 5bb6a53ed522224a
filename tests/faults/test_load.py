"""Load: 10,000 envelopes through a 2-actor pipeline at concurrency 8, a FLY each to a gateway.

All must arrive exactly as sent (two hops each), and the resident memory of every process must
be flat after warm-up: FLY buffers are bounded, nothing accumulates per envelope.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import msgspec
import pytest

from .conftest import transport_env
from .knobs import LOAD_ENVELOPES
from .procs import Mesh, Proc, QueueClient, make_envelope
from .results import Recorder
from .test_gateway_trouble import gateway_process

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

_GROWTH_KIB = 16 * 1024  # allowed RSS growth after warm-up (allocator noise, caches)


async def test_ten_thousand_envelopes_two_actors_memory_flat(
    mesh: Mesh, recorder: Recorder
) -> None:
    n = LOAD_ENVELOPES
    t = transport_env("sqlite", mesh.root)
    samples: list[tuple[int, dict[str, int]]] = []
    with anyio.fail_after(900):
        async with (
            QueueClient(t.config) as qc,
            gateway_process(mesh, {"mode": "healthy"}) as gw_url,
        ):
            procs: dict[str, Proc] = {}
            for actor in ("a", "b"):
                sock = mesh.root / actor
                procs[f"runtime-{actor}"] = await mesh.runtime(
                    "tests.faults.handlers:fly_step", sock, name=f"runtime-{actor}"
                )
                procs[f"sidecar-{actor}"] = mesh.sidecar(
                    actor,
                    sock,
                    {
                        **t.env,
                        "ASYA_CONCURRENCY": "8",
                        "ASYA_FLY_BUFFER": "64",
                        "ASYA_GATEWAY_URL": gw_url,
                    },
                    name=f"sidecar-{actor}",
                )
            await qc.wait_exists("a", "b")  # b's queue must exist before a routes to it
            ids = [str(uuid.uuid4()) for _ in range(n)]
            for i in range(0, n, 1000):
                await qc.send(
                    "a",
                    [
                        make_envelope("a", {"i": j}, next_=["b"], id=ids[j])
                        for j in range(i, min(i + 1000, n))
                    ],
                )
            t0 = time.monotonic()
            seen: dict[str, Any] = {}
            dupes = 0
            last_sample = 0.0
            while len(seen) < n:
                for body in await qc.drain("x-sink", wait=0.2, limit=2000):
                    env = msgspec.json.decode(body)
                    dupes += env["id"] in seen
                    seen[env["id"]] = env["payload"]
                for name, p in procs.items():
                    assert p.alive, f"{name} died:\n{p.output()[-2000:]}"
                if time.monotonic() - last_sample > 1.0:
                    last_sample = time.monotonic()
                    samples.append((len(seen), {k: p.rss_kib() for k, p in procs.items()}))
                assert time.monotonic() - t0 < 800, f"only {len(seen)}/{n} arrived"
            took = time.monotonic() - t0
            samples.append((len(seen), {k: p.rss_kib() for k, p in procs.items()}))
    assert set(seen) == set(ids)
    assert all(p["hops"] == 2 for p in seen.values())
    # Warm-up: the first quarter of the envelopes.
    warm = next(s for c, s in samples if c >= n // 4)
    peak = {k: max(s[k] for c, s in samples if c >= n // 4) for k in warm}
    growth = {k: peak[k] - warm[k] for k in warm}
    recorder.row(
        "load",
        f"{n} envelopes, 2-actor pipeline, concurrency 8, a FLY each to a gateway",
        n,
        f"all {n} arrived ({dupes} duplicates) in {took:.0f}s ({n / took:.0f} env/s); RSS growth "
        f"after warm-up (KiB): {growth}",
        rss_after_warmup_kib=warm,
        rss_peak_kib=peak,
        rss_growth_kib=growth,
        samples=[(c, s) for c, s in samples],
        seconds=round(took, 1),
    )
    leaking = {k: g for k, g in growth.items() if g > _GROWTH_KIB}
    assert not leaking, f"memory grew after warm-up (KiB): {leaking}"
