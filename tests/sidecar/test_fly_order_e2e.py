"""An envelope's FLYs reach the gateway before its terminal status: the sidecar gives them a
bounded flush before sending the last output on (here to x-sink, whose end actor reports
`succeeded`)."""

from __future__ import annotations

import anyio
import pytest

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FLOOD = "examples.handlers.util:fly_flood"
N = 200


async def test_every_fly_arrives_before_the_final_status(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        # Each request takes 0.1 s: the FLYs need several POSTs, x-sink's report only one.
        async with serve_gateway(RecordingGateway(delay=0.1)) as gw:
            mesh.runtime("flood", FLOOD)
            # A generous flush budget: this test is about order, not about the default bound.
            mesh.sidecar("flood", ASYA_GATEWAY_URL=gw.url, ASYA_FLY_FLUSH_TIMEOUT="5s")
            mesh.sidecar("x-sink", end=True, ASYA_GATEWAY_URL=gw.url)
            ids = [f"o-{k}" for k in range(3)]
            for tid in ids:
                await mesh.send("flood", envelope(tid, ["flood"], {"n": N}))
            for tid in ids:
                await wait_for(
                    lambda tid=tid: "succeeded" in gw.statuses(tid), what=f"{tid} succeeded"
                )
            for tid in ids:
                events = gw.event_list(tid)
                final = next(
                    i for i, e in enumerate(events) if e.get("status") in ("succeeded", "failed")
                )
                before = [e["data"]["i"] for e in events[:final] if e.get("type") == "fly"]
                assert before == list(range(N)), (tid, len(before), events[final:][:3])
