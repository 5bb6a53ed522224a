"""The event stream end to end: a real gateway process, real sidecars and a runtime. The
gateway is killed (-9) and restarted under the sidecars' open streams; the next task's tokens
and its end still reach the client, and they went by the stream again."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import httpx
import pytest

from tests.sidecar.harness import Mesh, free_port

from .helpers import SseEvent, read_sse
from .test_restart_e2e import GatewayProc

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]

N = 20  # FLYs per task


async def _run(c: httpx.AsyncClient, base: str) -> list[SseEvent]:
    """A task created with its stream (subscribed before it is enqueued): every event."""
    events: list[SseEvent] = []
    body = {"route": ["flood"], "payload": {"n": N}}
    headers = {"accept": "text/event-stream"}
    async with c.stream("POST", f"{base}/api/v1/mesh", json=body, headers=headers) as s:
        assert s.status_code == 200, await s.aread()
        await read_sse(s, events)
    return events


def _ok(events: list[SseEvent]) -> None:
    assert [e.data["i"] for e in events if e.event == "partial"] == list(range(N))
    assert events[-1].terminal and events[-1].data["status"] == "succeeded"


async def _streamed(c: httpx.AsyncClient, metrics: str) -> float:
    text = (await c.get(metrics)).text
    m = re.search(r"^asya_actor_gateway_streamed_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_a_gateway_killed_under_open_streams_gets_the_next_task_whole(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    mesh = Mesh(short_tmp, subprocess_env)
    gw = GatewayProc(short_tmp, f"sqlite://{short_tmp}/gw.db", mesh.env)
    gw.env["ASYA_NAMESPACE"] = mesh.namespace
    gw.env["ASYA_SQLITE_PATH"] = mesh.db
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        with anyio.fail_after(100):
            await gw.start()
            mesh.runtime("flood", "examples.handlers.util:fly_flood")
            mesh.sidecar("flood", ASYA_METRICS_ADDR=f"127.0.0.1:{port}")
            mesh.sidecar("x-sink", end=True)
            await mesh.wait_declared()
            async with httpx.AsyncClient(timeout=30) as c:
                _ok(await _run(c, gw.base))
                before = await _streamed(c, metrics)
                assert before > 0  # the first task's events went by the stream
                gw.kill9()  # the sidecars' sockets die with it: no close, no answer
                await gw.start()  # same port, same store
                _ok(await _run(c, gw.base))  # by POST while the stream backs off, or by it
                _ok(await _run(c, gw.base))
                # After its backoff (0.5 s first) the stream is back: the flood actor's next
                # batches are answered on it again.
                with anyio.fail_after(20):
                    while await _streamed(c, metrics) <= before:
                        _ok(await _run(c, gw.base))
    finally:
        gw.stop()
        await mesh.aclose()
