"""FLY end to end (handler -> runtime -> sidecar -> gateway -> SSE client) vs. the gateway alone.

    .venv/bin/python bench/fly_bench.py [--quick]

1. Throughput: one task streaming N FLYs as fast as it can (examples.handlers.util:fly_flood),
   FLYs received by an SSE client / time from the task's creation to the last FLY received
   (target >= 20k/s). Run twice: with the sidecar's default FLY buffer (it drops what does not
   fit, by design) and with ASYA_FLY_BUFFER=65536 (nothing dropped). Baseline: the same N
   FLYs POSTed straight to the gateway in batches of 100 (as a sidecar batches), read over SSE.
2. Latency from yield to client at a steady 1,000 FLY/s (bench/fly_handlers.py:steady stamps
   the wall clock at each yield), p50/p99 (target p99 <= 5 ms). Baseline: one POST per FLY to
   the gateway alone at the same rate, stamped just before the POST.

The mesh is `asya dev`'s (gateway, runtime, sidecar, x-sink, x-sump on SQLite), all processes
on this machine, the client in this process.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asya_dev.cli import DevOptions  # noqa: E402
from asya_dev.mesh import dev_flows, plan_mesh, wait_ready  # noqa: E402
from asya_dev.supervisor import Supervisor  # noqa: E402
from asya_mesh.transports import TransportConfig, open_transport, queue_name  # noqa: E402
from bench.sse_read import read_flys  # noqa: E402

HANDLERS = {
    "flood": "examples.handlers.util:fly_flood",  # sidecar with its default FLY buffer
    "floodbig": "examples.handlers.util:fly_flood",  # sidecar with ASYA_FLY_BUFFER=BIG
    "steady": "bench.fly_handlers:steady",
    "text": "bench.fly_handlers:text_flood",  # text FLYs, default buffer: folded, not dropped
}
BIG = 65536


async def _stream_task(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], on_fly: Any
) -> dict[str, Any]:
    async with client.stream(
        "POST", f"{url}/api/v1/mesh", json=body, headers={"Accept": "text/event-stream"}
    ) as resp:
        resp.raise_for_status()
        return await read_flys(resp, on_fly)


async def _post(client: httpx.AsyncClient, url: str, body: Any) -> None:
    """A sidecar's POST; a refusal stops the bench (it would wait for events forever)."""
    (await client.post(url, json=body)).raise_for_status()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def mesh_throughput(
    client: httpx.AsyncClient, url: str, n: int, actor: str = "flood"
) -> tuple[float, int]:
    times: list[float] = []
    t0 = time.perf_counter()  # from the task's creation: handler, runtime, sidecar, gateway
    final = await _stream_task(
        client,
        url,
        {"route": [actor], "payload": {"n": n}},
        lambda d: times.append(time.perf_counter()),
    )
    assert final["status"] == "succeeded", final
    return len(times) / (times[-1] - t0), len(times)


async def _counter(client: httpx.AsyncClient, metrics_url: str, name: str) -> float:
    text = (await client.get(metrics_url)).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + " "))


async def gateway_throughput(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, int]:
    """Baseline: POST batches of 100 FLYs straight to the gateway, read them over SSE."""
    r = await client.post(f"{url}/api/v1/mesh", json={"route": ["nobody"], "payload": {}})
    tid = r.json()["id"]
    times: list[float] = []
    async with client.stream("GET", f"{url}/stream/{tid}") as s, anyio.create_task_group() as tg:

        async def read() -> None:
            await read_flys(s, lambda d: times.append(time.perf_counter()))

        tg.start_soon(read)
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            batch = [{"type": "fly", "data": {"i": i, "t": 0}} for i in range(start, start + 100)]
            await _post(client, f"{url}/api/v1/mesh/{tid}/events", batch)
        await _post(
            client, f"{url}/api/v1/mesh/{tid}/events", {"type": "status", "status": "succeeded"}
        )
    return len(times) / (times[-1] - t0), len(times)


async def mesh_text(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, int, bool]:
    """(FLYs/s, SSE events received, whether the client's text is the handler's)."""
    texts: list[str] = []
    t0 = time.perf_counter()
    final = await _stream_task(
        client,
        url,
        {"route": ["text"], "payload": {"n": n}},
        lambda d: texts.append(msgspec.json.decode(d)["text"]),
    )
    took = time.perf_counter() - t0
    assert final["status"] == "succeeded", final
    return n / took, len(texts), "".join(texts) == "".join(f"t{i} " for i in range(n))


async def mesh_latency(client: httpx.AsyncClient, url: str, n: int) -> list[float]:
    lat: list[float] = []

    def on_fly(data: bytes) -> None:
        lat.append((time.time_ns() - msgspec.json.decode(data)["t"]) / 1e6)

    body = {"route": ["steady"], "payload": {"n": n, "rate": 1000}}
    final = await _stream_task(client, url, body, on_fly)
    assert final["status"] == "succeeded", final
    return lat[len(lat) // 10 :]  # skip warm-up


async def gateway_latency(client: httpx.AsyncClient, url: str, n: int) -> list[float]:
    """Baseline: one POST per FLY at 1,000/s, stamped just before the POST."""
    r = await client.post(f"{url}/api/v1/mesh", json={"route": ["nobody"], "payload": {}})
    tid = r.json()["id"]
    lat: list[float] = []

    def on_fly(data: bytes) -> None:
        lat.append((time.time_ns() - msgspec.json.decode(data)["t"]) / 1e6)

    async with client.stream("GET", f"{url}/stream/{tid}") as s, anyio.create_task_group() as tg:
        tg.start_soon(read_flys, s, on_fly)
        start = time.perf_counter()
        for i in range(n):
            wait = start + i / 1000 - time.perf_counter()
            if wait > 0:
                await anyio.sleep(wait)
            await _post(
                client,
                f"{url}/api/v1/mesh/{tid}/events",
                {"type": "fly", "data": {"i": i, "t": time.time_ns()}},
            )
        await _post(
            client, f"{url}/api/v1/mesh/{tid}/events", {"type": "status", "status": "succeeded"}
        )
    return lat[len(lat) // 10 :]


async def main(quick: bool) -> None:
    n_flood = 10_000 if quick else 50_000
    n_steady = 1_000 if quick else 5_000
    workdir = Path(tempfile.mkdtemp(prefix="asya-fb-", dir="/tmp"))
    port = 18000 + os.getpid() % 1000
    opts = DevOptions(route=list(HANDLERS), handlers=HANDLERS, port=port, workdir=workdir / "d")
    opts.workdir.mkdir(parents=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The bench client is the only subscriber: let it lag without gateway-side drops.
    env["ASYA_GATEWAY_SUBSCRIBER_BUFFER"] = str(BIG)
    # The baselines post events as a sidecar does: with the mesh token `asya dev` would make.
    token = env.setdefault("ASYA_GATEWAY_MESH_TOKEN", secrets.token_urlsafe(32))
    os.chdir(ROOT)
    plan = plan_mesh(opts, env)
    (opts.workdir / "flows.json").write_bytes(dev_flows(opts))  # as run_dev writes it
    for spec in plan.children:
        if spec.name == "floodbig/sidecar":
            spec.env = {**spec.env, "ASYA_FLY_BUFFER": str(BIG)}
    metrics = {
        a: u.replace("/health", "/metrics")
        for a, u in zip([*opts.route, "x-sink", "x-sump"], plan.sidecar_health_urls, strict=True)
    }
    sup = Supervisor(sys.stderr)
    res: dict[str, Any] = {}
    try:
        async with anyio.create_task_group() as tg:
            for spec in plan.children:
                await sup.start(tg, spec)
            await wait_ready(plan, 120)  # a loaded 2-core machine starts 12 processes slowly
            # The gateway-only baselines create tasks for an actor nobody serves: its queue
            # must exist (a create for an undeclared first actor is refused).
            queues = await open_transport(
                TransportConfig(
                    sqlite_path=str(opts.workdir / "queues.db"), namespace=opts.namespace
                )
            )
            await queues.declare(queue_name(opts.namespace, "nobody"))
            await queues.aclose()
            url = plan.gateway_url
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(30, read=None),
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                await mesh_throughput(client, url, 1000)  # warm-up
                res["base_tp"] = await gateway_throughput(client, url, n_flood)
                res["mesh_tp"] = await mesh_throughput(client, url, n_flood, "flood")
                res["mesh_drop"] = await _counter(client, metrics["flood"], FLY_DROPPED)
                res["big_tp"] = await mesh_throughput(client, url, n_flood, "floodbig")
                res["big_drop"] = await _counter(client, metrics["floodbig"], FLY_DROPPED)
                res["text"] = await mesh_text(client, url, n_flood)
                res["text_drop"] = await _counter(client, metrics["text"], FLY_DROPPED)
                res["base_lat"] = await gateway_latency(client, url, n_steady)
                res["mesh_lat"] = await mesh_latency(client, url, n_steady)
                res["lat_drop"] = await _counter(client, metrics["steady"], FLY_DROPPED)
                res["gw"] = (await client.get(f"{url}/api/v1/stats")).json()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await sup.stop_all()
        sup.kill_all_now()
        shutil.rmtree(workdir, ignore_errors=True)
    report(res, n_flood)


FLY_DROPPED = "asya_actor_fly_dropped_total"


def report(res: dict[str, Any], n: int) -> None:
    (base_tp, base_n), (mesh_tp, mesh_n), (big_tp, big_n) = (
        res["base_tp"],
        res["mesh_tp"],
        res["big_tp"],
    )
    print(f"FLY throughput, one task, {n} FLYs as fast as possible (received / time to the last)")
    print(
        f"  baseline  POST batches of 100 -> gateway -> SSE   {base_tp:9,.0f}/s  {base_n} received"
    )
    print(
        f"  mesh, sidecar FLY buffer default                  {mesh_tp:9,.0f}/s  {mesh_n} received,"
        f" {res['mesh_drop']:.0f} dropped by the sidecar"
    )
    print(
        f"  mesh, ASYA_FLY_BUFFER={BIG}                      {big_tp:9,.0f}/s  {big_n} received,"
        f" {res['big_drop']:.0f} dropped by the sidecar"
    )
    print(f"  target >= 20,000/s; ratio mesh(big buffer)/baseline: {big_tp / base_tp:.2f}")
    text_tp, text_events, text_ok = res["text"]
    print(
        f"  mesh, text FLYs, default buffer                  {text_tp:9,.0f}/s  {n} streamed in"
        f" {text_events} SSE events, every character: {text_ok},"
        f" {res['text_drop']:.0f} dropped by the sidecar"
    )
    base_lat, mesh_lat = res["base_lat"], res["mesh_lat"]
    print(f"FLY latency, yield -> client at a steady 1,000 FLY/s ({len(mesh_lat)} samples, ms)")
    for name, lat in (
        ("baseline  POST -> gateway -> SSE", base_lat),
        ("mesh      handler -> runtime -> sidecar -> gateway -> SSE", mesh_lat),
    ):
        print(
            f"  {name:58s} p50 {statistics.median(lat):6.2f}  p99 {_pct(lat, 99):6.2f}  "
            f"max {max(lat):6.2f}"
        )
    print(
        f"  target p99 <= 5 ms; p99 ratio mesh/baseline: "
        f"{_pct(mesh_lat, 99) / _pct(base_lat, 99):.2f}; sidecar drops {res['lat_drop']:.0f}"
    )
    print(f"gateway stats: {res['gw']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer events (well under a minute)")
    anyio.run(main, ap.parse_args().quick)
