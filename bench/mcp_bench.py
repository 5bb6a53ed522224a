"""FLYs through an MCP tool call (progress notifications) vs. the native SSE stream, same mesh,
same run.

    .venv/bin/python bench/mcp_bench.py [--quick]

1. Throughput: one task streaming N FLYs as fast as it can (examples.handlers.util:fly_flood,
   sidecar ASYA_FLY_BUFFER=65536 so nothing is dropped): FLYs received / time from the request
   to the last FLY. Native: `POST /api/v1/mesh` with `Accept: text/event-stream`. MCP: the
   official client's `call_tool(..., progress_callback=)` on the 2026-07-28 revision.
2. First-progress latency: request sent → first FLY received, K calls of a handler whose first
   FLY is yielded at once (bench/fly_handlers.py:steady), p50/p99.
3. Per-FLY latency at a steady 1,000 FLY/s, yield (wall clock stamped in the FLY) → client.

Where the door runs: if the gateway itself serves `/mcp` with these flows (it reads
ASYA_GATEWAY_FLOWS once the door is mounted), that one; otherwise the door runs in this process
over the gateway's REST + SSE API (tests/mcp/restservice.py), which adds one SSE hop to the MCP
path. The report says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from asya_dev.cli import DevOptions  # noqa: E402
from asya_dev.mesh import plan_mesh, wait_ready  # noqa: E402
from asya_dev.supervisor import Supervisor  # noqa: E402
from asya_gateway.flows import parse_flows  # noqa: E402
from asya_gateway.mcp import mcp_app  # noqa: E402
from bench.sse_read import read_flys  # noqa: E402
from tests.mcp.restservice import RestTaskService  # noqa: E402

HANDLERS = {"flood": "examples.handlers.util:fly_flood", "steady": "bench.fly_handlers:steady"}
FLOWS_DOC = {"flows": [{"name": a, "route": [a]} for a in HANDLERS]}
BIG = 65536
times: list[float] = []  # arrival times of the FLYs of the current measurement


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def native(client: httpx.AsyncClient, url: str, actor: str, payload: Any) -> list[bytes]:
    """FLY data as received over the native stream, each with its arrival time appended."""
    out: list[bytes] = []
    async with client.stream(
        "POST",
        f"{url}/api/v1/mesh",
        json={"route": [actor], "payload": payload},
        headers={"Accept": "text/event-stream"},
    ) as resp:

        def on_fly(data: bytes) -> None:
            out.append(data)
            times.append(time.perf_counter())

        final = await read_flys(resp, on_fly)
    if final["status"] != "succeeded":
        raise RuntimeError(f"native stream ended {final['status']}")
    return out


async def mcp_call(session: ClientSession, tool: str, args: dict[str, Any]) -> list[str]:
    msgs: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        times.append(time.perf_counter())
        msgs.append(message or "")

    result = await session.call_tool(tool, args, progress_callback=on_progress)
    assert not result.is_error, result
    return msgs


async def _mounted(gateway: str) -> bool:
    """Whether the gateway itself serves these flows at /mcp."""
    try:
        async with (
            streamable_http_client(f"{gateway}/mcp") as (r, w),
            ClientSession(r, w) as s,
        ):
            await s.discover()
            names = {t.name for t in (await s.list_tools()).tools}
    except Exception:  # no door there (404) or not speaking MCP: bridge it
        return False
    return set(HANDLERS) <= names


@asynccontextmanager
async def door_url(gateway: str) -> AsyncIterator[tuple[str, str]]:
    """(base URL whose /mcp serves the flows, where the door runs)."""
    if await _mounted(gateway):
        yield gateway, "mounted in the gateway"
        return
    svc = RestTaskService(gateway)
    app = mcp_app(svc, parse_flows(json.dumps(FLOWS_DOC).encode())).starlette()
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
            await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", "in the bench process, over REST + SSE (one hop more)"
        finally:
            server.should_exit = True
            await svc.aclose()


async def measure(gateway: str, n: int, k: int, n_steady: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    async with (
        door_url(gateway) as (url, where),
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
        streamable_http_client(f"{url}/mcp") as (r, w),
        ClientSession(r, w) as session,
    ):
        await session.discover()
        res["where"] = where
        await native(client, gateway, "flood", {"n": 1000})  # warm-up
        await mcp_call(session, "flood", {"n": 1000})
        for label, run in (
            ("native", lambda: native(client, gateway, "flood", {"n": n})),
            ("mcp", lambda: mcp_call(session, "flood", {"n": n})),
        ):
            times.clear()
            t0 = time.perf_counter()
            got = await run()
            res[f"{label}_tp"] = (len(got) / (times[-1] - t0), len(got))
        for label, first in (
            ("native", lambda: native(client, gateway, "steady", {"n": 1, "rate": 1000})),
            ("mcp", lambda: mcp_call(session, "steady", {"n": 1, "rate": 1000})),
        ):
            lat = []
            for _ in range(k):
                times.clear()
                t0 = time.perf_counter()
                await first()
                lat.append((times[0] - t0) * 1000)
            res[f"{label}_first"] = lat
        steady = {"n": n_steady, "rate": 1000}
        res["native_lat"] = await _lat_native(client, gateway, steady)
        res["mcp_lat"] = await _lat_mcp(session, steady)
    return res


async def _lat_native(client: httpx.AsyncClient, url: str, payload: Any) -> list[float]:
    lat: list[float] = []
    async with client.stream(
        "POST",
        f"{url}/api/v1/mesh",
        json={"route": ["steady"], "payload": payload},
        headers={"Accept": "text/event-stream"},
    ) as resp:
        buf = b""
        async for chunk in resp.aiter_bytes():
            buf += chunk
            *events, buf = buf.split(b"\n\n")
            for ev in events:
                if b"event: partial" in ev:
                    data = b"\n".join(ln[6:] for ln in ev.split(b"\n") if ln.startswith(b"data: "))
                    lat.append((time.time_ns() - msgspec.json.decode(data)["t"]) / 1e6)
    return lat[len(lat) // 10 :]


async def _lat_mcp(session: ClientSession, payload: Any) -> list[float]:
    lat: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        lat.append((time.time_ns() - msgspec.json.decode(message or "{}")["t"]) / 1e6)

    await session.call_tool("steady", payload, progress_callback=on_progress)
    return lat[len(lat) // 10 :]


async def main(quick: bool) -> None:
    n, k, n_steady = (5_000, 10, 1_000) if quick else (20_000, 30, 3_000)
    workdir = Path(tempfile.mkdtemp(prefix="asya-mb-", dir="/tmp"))
    port = 19000 + os.getpid() % 1000
    opts = DevOptions(route=list(HANDLERS), handlers=HANDLERS, port=port, workdir=workdir / "d")
    opts.workdir.mkdir(parents=True)
    # The gateway reads its flows from the file `asya dev` writes there (this bench's flows).
    (opts.workdir / "flows.json").write_text(json.dumps(FLOWS_DOC))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["ASYA_GATEWAY_SUBSCRIBER_BUFFER"] = str(BIG)
    os.chdir(ROOT)
    plan = plan_mesh(opts, env)
    for spec in plan.children:
        if spec.name == "flood/sidecar":
            spec.env = {**spec.env, "ASYA_FLY_BUFFER": str(BIG)}
    sup = Supervisor(sys.stderr)
    try:
        async with anyio.create_task_group() as tg:
            for spec in plan.children:
                await sup.start(tg, spec)
            await wait_ready(plan, 60)
            res = await measure(plan.gateway_url, n, k, n_steady)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await sup.stop_all()
        sup.kill_all_now()
        shutil.rmtree(workdir, ignore_errors=True)
    report(res, n, k)


def report(res: dict[str, Any], n: int, k: int) -> None:
    print(f"MCP door: {res['where']}")
    print(f"FLY throughput, one task, {n} FLYs as fast as possible (received / time to the last)")
    for label, name in (("native", "native SSE stream"), ("mcp", "MCP progress notifications")):
        tp, got = res[f"{label}_tp"]
        print(f"  {name:28s} {tp:9,.0f}/s  {got} received")
    print(f"  ratio mcp/native: {res['mcp_tp'][0] / res['native_tp'][0]:.2f}")
    print(f"First FLY latency, request sent -> first FLY received ({k} calls, ms)")
    for label, name in (("native", "native SSE stream"), ("mcp", "MCP progress notification")):
        lat = res[f"{label}_first"]
        print(f"  {name:28s} p50 {statistics.median(lat):7.2f}  p99 {_pct(lat, 99):7.2f}")
    print("FLY latency, yield -> client at a steady 1,000 FLY/s (ms)")
    for label, name in (("native", "native SSE stream"), ("mcp", "MCP progress notifications")):
        lat = res[f"{label}_lat"]
        print(
            f"  {name:28s} p50 {statistics.median(lat):7.2f}  p99 {_pct(lat, 99):7.2f}  "
            f"({len(lat)} samples)"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer events (well under a minute)")
    anyio.run(main, ap.parse_args().quick)
