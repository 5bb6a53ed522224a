"""Pause (front-doors.md): an output with `x-asya-pause` is not routed; the sidecar reports
`paused` with the envelope to the gateway, awaited, and acks only once the gateway took it."""

from __future__ import annotations

import anyio
import pytest

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PAUSE = "tests.sidecar.handlers:pause"


def paused(gw: RecordingGateway, tid: str) -> list[dict[str, object]]:
    return [
        r.body
        for r in gw.requests
        if r.path == f"/api/v1/mesh/{tid}/events"
        and isinstance(r.body, dict)
        and r.body.get("status") == "paused"
    ]


async def test_pause_is_reported_with_the_envelope_and_then_acked(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            mesh.runtime("ask", PAUSE)
            mesh.sidecar("ask", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("ask", envelope("p-1", ["ask", "next"], {"q": "ship it?"}))
            (report,) = await wait_for(lambda: paused(gw, "p-1"), what="the paused report")
            data = report["data"]
            assert isinstance(data, dict)
            assert data["pause"] == {"prompt": "Approve?"}
            env = data["envelope"]
            assert env["id"] == "p-1" and env["payload"] == {"q": "ship it?"}
            assert env["route"]["curr"] == "next"  # where the resume goes
            assert env["headers"]["x-asya-pause"] == {"prompt": "Approve?"}
            assert data["flies"] == 1 and env["headers"]["x-asya-fly-count"] == 1
            await mesh.wait_depth("ask", 0)  # acked
            assert await mesh.depth("next") == 0  # not routed


async def test_pause_the_gateway_refuses_is_requeued_never_lost(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(events_status=422)) as gw:
            mesh.runtime("ask", PAUSE)
            mesh.sidecar("ask", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("ask", envelope("p-2", ["ask", "next"], {"q": 1}))
            # Refused, requeued, redelivered, reported again: the input was kept.
            await wait_for(lambda: len(paused(gw, "p-2")) >= 2, what="the pause retried")
            assert await mesh.depth("next") == 0 and await mesh.depth("x-sink") == 0
            assert await mesh.depth("ask") == 1
