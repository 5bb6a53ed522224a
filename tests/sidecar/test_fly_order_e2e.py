"""FLY-before-terminal by counting, at the sidecar's seam: every FLY a task's sidecars send
carries `seq` (its position among all of the task's FLYs, across hops, in yield order), the
envelope carries the running count on (`x-asya-fly-count`), and the end actor's terminal
status says how many there were (`flies`). The gateway orders by these; no sidecar waits."""

from __future__ import annotations

import anyio
import pytest

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FLOOD = "examples.handlers.util:fly_flood"
N = 200


async def test_flies_carry_seq_across_hops_and_the_terminal_counts_them(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        # Each request takes 0.1 s: the FLYs need several POSTs, x-sink's report only one, so
        # the terminal status may well arrive first; the counts let the gateway order them.
        async with serve_gateway(RecordingGateway(delay=0.1)) as gw:
            for actor in ("flood", "flood2"):
                mesh.runtime(actor, FLOOD)
                mesh.sidecar(actor, ASYA_GATEWAY_URL=gw.url)
            mesh.sidecar("x-sink", end=True, ASYA_GATEWAY_URL=gw.url)
            ids = [f"o-{k}" for k in range(3)]
            for tid in ids:
                await mesh.send("flood", envelope(tid, ["flood", "flood2"], {"n": N}))
            for tid in ids:
                await wait_for(
                    lambda tid=tid: "succeeded" in gw.statuses(tid) and len(gw.flys(tid)) == 2 * N,
                    what=f"{tid} succeeded with all its FLYs",
                )
            for tid in ids:
                events = gw.event_list(tid)
                flies = [e for e in events if e.get("type") == "fly"]
                # Per hop in yield order; hop 2 continues where hop 1 stopped.
                by_seq = sorted(flies, key=lambda e: e["seq"])
                assert [e["seq"] for e in by_seq] == list(range(2 * N)), tid
                assert [e["data"]["i"] for e in by_seq] == list(range(N)) * 2
                for hop in (by_seq[:N], by_seq[N:]):
                    arrival = [e for e in flies if e in hop]
                    assert arrival == hop  # one sidecar's FLYs arrive in yield order
                final = next(e for e in events if e.get("status") == "succeeded")
                assert final["data"]["flies"] == 2 * N
