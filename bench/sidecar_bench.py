"""Sidecar benchmark on the embedded (SQLite) queue, against a baseline measured in the same run.

    .venv/bin/python bench/sidecar_bench.py [--quick]

1. Throughput of a 3-actor pipeline (trivial echo handler): sidecars + runtimes vs. a baseline
   of 3 bare queue relays (receive -> send to next -> ack, no runtime), each its own process.
2. Latency per hop, one envelope at a time (p50/p99): sidecar hop vs. relay hop; the difference
   is what the sidecar adds beyond the queue's own cost.
3. I/O-bound handler (sleeps 50 ms): throughput at ASYA_CONCURRENCY 1 vs 8 (target >= 6x).

    .venv/bin/python bench/sidecar_bench.py --gateway [--quick] [--pin]

4. A healthy (real) gateway on the routing path: one actor (concurrency 4, echo with F FLYs)
   routes the same N gateway-created tasks with its gateway reporting on vs. off
   (`x-asya-mesh-status: off`), alternately in one run (target: on >= 0.9x off), and the
   sidecar's CPU per task (from /proc) in each mode. With `--pin` the gateway runs on core 1
   and everything else on core 0, as when the gateway is its own pod: the ratio then shows what
   reporting costs the actor, not the gateway's CPU competing for the actor's cores. Cases:
   fly0 and fly10 (CPU-bound: 0 and 10 FLYs), io5ms (each task awaits 5 ms first, as a model
   call would: the throughput is the same either way, the CPU per task is the figure).
   `--status-linger 0` turns the sidecar's status linger off, `--event-stream off` its event
   stream (every batch a POST), for an A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asya_mesh.transports import TransportConfig, open_transport, queue_name  # noqa: E402

BIN = Path(sys.executable).parent
NS = "bench"


def _env(db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        ASYA_SQLITE_PATH=db,
        ASYA_NAMESPACE=NS,
        ASYA_TRANSPORT="sqlite",
        ASYA_METRICS_ADDR="",
        ASYA_LOG_LEVEL="WARNING",
        ASYA_LOG_FORMAT="json",
    )
    return env


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "q.db")
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], **extra: str) -> None:
        env = _env(self.db) | extra
        log = open(self.tmp / f"p{len(self.procs)}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=log))
        log.close()

    def actor(self, name: str, handler: str, **extra: str) -> None:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        sock = str(d / "asya-runtime.sock")
        self.spawn([str(BIN / "asya-runtime"), "run", handler, "--socket", sock])
        self.spawn(
            [str(BIN / "asya-sidecar"), "run"],
            ASYA_ACTOR_NAME=name,
            ASYA_SOCKET_DIR=str(d),
            **extra,
        )

    def relay(self, src: str, dst: str) -> None:
        self.spawn([sys.executable, __file__, "--relay", src, dst])

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs.clear()


def _env_body(route: list[str], payload: Any) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "route": {"prev": [], "curr": route[0], "next": route[1:]},
            "payload": payload,
        }
    ).encode()


async def _relay(src: str, dst: str) -> None:
    """Baseline hop: what any consumer of the queue must do (receive, send on, ack)."""
    t = await open_transport(
        TransportConfig(kind="sqlite", namespace=NS, sqlite_path=os.environ["ASYA_SQLITE_PATH"])
    )
    while True:
        d = await t.receive(queue_name(NS, src), wait=5)
        if d is not None:
            await t.send(queue_name(NS, dst), d.body)
            await d.ack()


async def _drain(t: Any, sink: str, n: int, within: float = 120) -> list[float]:
    """Receive `n` messages from `sink`; returns arrival times."""
    times = []
    with anyio.fail_after(within):
        while len(times) < n:
            d = await t.receive(queue_name(NS, sink), wait=5)
            if d is not None:
                await d.ack()
                times.append(time.perf_counter())
    return times


async def _warm(t: Any, first: str, sink: str, route: list[str], payload: Any) -> None:
    for _ in range(3):
        await t.send(queue_name(NS, first), _env_body(route, payload))
        await _drain(t, sink, 1, within=60)


async def throughput(t: Any, route: list[str], sink: str, n: int, payload: Any) -> float:
    bodies = [_env_body(route, payload) for _ in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        await t.send(queue_name(NS, route[0]), b)
    times = await _drain(t, sink, n)
    return n / (times[-1] - t0)


async def latency(t: Any, route: list[str], sink: str, n: int) -> list[float]:
    """Per-hop latency (ms) of single envelopes, one at a time."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await t.send(queue_name(NS, route[0]), _env_body(route, {"x": 1}))
        (t1,) = await _drain(t, sink, 1)
        out.append((t1 - t0) * 1000 / len(route))
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def bench(quick: bool) -> None:
    n_tp, n_lat, n_io = (200, 100, 40) if quick else (1000, 400, 120)
    tmp = Path(tempfile.mkdtemp(prefix="asya-b-", dir="/tmp"))
    procs = Procs(tmp)
    t = await open_transport(TransportConfig(kind="sqlite", namespace=NS, sqlite_path=procs.db))
    results: dict[str, Any] = {}
    try:
        # Both chains run at once and are measured alternately, so that noise from a shared
        # machine hits baseline and sidecar alike.
        # -- baseline: three bare relays r1 -> r2 -> r3 -> rout
        procs.relay("r1", "r2")
        procs.relay("r2", "r3")
        procs.relay("r3", "rout")
        # -- sidecars: a -> b -> c -> x-sink
        for a in ("a", "b", "c"):
            procs.actor(a, "examples.handlers.util:echo")
        route = ["a", "b", "c"]
        await _warm(t, "r1", "rout", ["r1"], {"x": 1})
        await _warm(t, "a", "x-sink", route, {"x": 1})
        base_tp = await throughput(t, ["r1"], "rout", n_tp, {"x": 1})
        sc_tp = await throughput(t, route, "x-sink", n_tp, {"x": 1})
        base_lat: list[float] = []
        sc_lat: list[float] = []
        for _ in range(n_lat):
            base_lat += await latency(t, ["r1", "r2", "r3"], "rout", 1)
            sc_lat += await latency(t, route, "x-sink", 1)
        procs.close()

        # -- I/O-bound: one actor sleeping 50 ms, concurrency 1 vs 8
        io: dict[int, float] = {}
        for conc in (1, 8):
            procs.actor(f"io{conc}", "examples.handlers.util:sleep", ASYA_CONCURRENCY=str(conc))
            await _warm(t, f"io{conc}", "x-sink", [f"io{conc}"], {"sleep": 0.05})
            io[conc] = await throughput(t, [f"io{conc}"], "x-sink", n_io, {"sleep": 0.05})
            procs.close()

        results = {
            "pipeline_envelopes_per_s": round(sc_tp, 1),
            "baseline_relay_envelopes_per_s": round(base_tp, 1),
            "throughput_ratio_vs_baseline": round(sc_tp / base_tp, 3),
            "hop_ms_p50": round(pct(sc_lat, 50), 3),
            "hop_ms_p99": round(pct(sc_lat, 99), 3),
            "baseline_hop_ms_p50": round(pct(base_lat, 50), 3),
            "baseline_hop_ms_p99": round(pct(base_lat, 99), 3),
            "added_ms_p50": round(pct(sc_lat, 50) - pct(base_lat, 50), 3),
            "added_ms_p99": round(pct(sc_lat, 99) - pct(base_lat, 99), 3),
            "io_50ms_conc1_per_s": round(io[1], 2),
            "io_50ms_conc8_per_s": round(io[8], 2),
            "io_speedup_8_vs_1": round(io[8] / io[1], 2),
            "hop_ms_mean": round(statistics.mean(sc_lat), 3),
        }
    finally:
        procs.close()
        await t.aclose()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))
    print(
        f"added latency per hop: p50 {results['added_ms_p50']} ms, "
        f"p99 {results['added_ms_p99']} ms (target p99 <= 1 ms)"
    )
    print(f"I/O-bound speed-up at concurrency 8: {results['io_speedup_8_vs_1']}x (target >= 6x)")


async def _gw_tasks(http: Any, gw: str, n: int) -> list[bytes]:
    """`n` tasks created at the gateway, parked in queue `hold` (no consumer); returned as
    bodies addressed to actor `g`, exactly as the gateway built them."""
    for _ in range(n):
        r = await http.post(f"{gw}/api/v1/mesh", json={"route": ["hold", "g", "probe"]})
        r.raise_for_status()
    return [b for b in await _take(n, "hold")]


_T: Any = None  # the bench's transport (set in gateway_bench)


async def _take(n: int, queue: str, within: float = 120) -> list[bytes]:
    out: list[bytes] = []
    with anyio.fail_after(within):
        while len(out) < n:
            d = await _T.receive(queue_name(NS, queue), wait=5)
            if d is not None:
                out.append(d.body)
                await d.ack()
    return out


def _shift(body: bytes, off: bool) -> bytes:
    env = json.loads(body)
    r = env["route"]
    r["prev"], r["curr"], r["next"] = [*r["prev"], r["curr"]], r["next"][0], r["next"][1:]
    if off:
        env.setdefault("headers", {})["x-asya-mesh-status"] = "off"
    return json.dumps(env).encode()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _gw_round(
    http: Any, gw: str, n: int, case: tuple[int, float], off: bool, pid: int, gw_pid: int
) -> tuple[float, float, float]:
    """(envelopes/s, sidecar and gateway CPU ms per envelope) for one batch of `n` tasks."""
    bodies = [_shift(b, off) for b in await _gw_tasks(http, gw, n)]
    flys, sleep = case
    for i, b in enumerate(bodies):
        env = json.loads(b)
        env["payload"] = {"n": flys, "k": i, "sleep": sleep}
        bodies[i] = json.dumps(env).encode()
    c0, g0, t0 = _cpu_s(pid), _cpu_s(gw_pid), time.perf_counter()
    for b in bodies:
        await _T.send(queue_name(NS, "g"), b)
    await _take(n, "probe")
    took, cpu, gcpu = time.perf_counter() - t0, _cpu_s(pid) - c0, _cpu_s(gw_pid) - g0
    return n / took, cpu * 1000 / n, gcpu * 1000 / n


_CASES: dict[str, tuple[int, float]] = {"fly0": (0, 0.0), "fly10": (10, 0.0), "io5ms": (0, 0.005)}


async def gateway_bench(
    quick: bool, pin: bool = False, linger: str | None = None, stream: str | None = None
) -> None:
    import httpx

    global _T
    n, rounds = (200, 2) if quick else (2000, 5)  # 5 alternated rounds: the medians settle
    tmp = Path(tempfile.mkdtemp(prefix="asya-g-", dir="/tmp"))
    procs = Procs(tmp)
    _T = await open_transport(TransportConfig(kind="sqlite", namespace=NS, sqlite_path=procs.db))
    for q in ("hold", "probe"):  # the bench plays these actors: their queues must exist
        await _T.declare(queue_name(NS, q))
    port = 19000 + os.getpid() % 1000
    gw = f"http://127.0.0.1:{port}"
    res: dict[str, list[tuple[float, float, float]]] = {}
    try:
        run = ["run", "--host", "127.0.0.1", "--port", str(port)]
        procs.spawn(
            [str(BIN / "asya-gateway"), *run],
            ASYA_GATEWAY_DATABASE_URL=f"sqlite:///{tmp / 'gw.db'}",
        )
        extra = {} if linger is None else {"ASYA_GATEWAY_STATUS_LINGER": linger}
        if stream is not None:
            extra["ASYA_GATEWAY_EVENT_STREAM"] = "true" if stream == "on" else "false"
        procs.actor(
            "g",
            "examples.handlers.util:fly_flood",
            ASYA_CONCURRENCY="4",
            ASYA_GATEWAY_URL=gw,
            **extra,
        )
        pid, gw_pid = procs.procs[-1].pid, procs.procs[0].pid
        if pin:  # the gateway on a core of its own, as in its own pod; the actor and we share one
            os.sched_setaffinity(gw_pid, {1})
            for p in procs.procs[1:]:
                os.sched_setaffinity(p.pid, {0})
            os.sched_setaffinity(0, {0})
        async with httpx.AsyncClient(timeout=30) as http:
            with anyio.fail_after(60):
                while True:
                    try:
                        if (await http.get(f"{gw}/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await anyio.sleep(0.2)
            for name, case in _CASES.items():
                await _gw_round(http, gw, 20, case, False, pid, gw_pid)  # warm-up (feed connected)
                await _gw_round(http, gw, 20, case, True, pid, gw_pid)
                for _ in range(rounds):
                    for off in (False, True):
                        key = f"{'off' if off else 'on'}_{name}"
                        res.setdefault(key, []).append(
                            await _gw_round(http, gw, n, case, off, pid, gw_pid)
                        )
    finally:
        procs.close()
        await _T.aclose()
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {}
    for name in _CASES:
        on, off = res[f"on_{name}"], res[f"off_{name}"]
        on_tp = statistics.median(r[0] for r in on)
        off_tp = statistics.median(r[0] for r in off)
        sc_on = statistics.median(r[1] for r in on)
        sc_off = statistics.median(r[1] for r in off)
        gw_on = statistics.median(r[2] for r in on)
        out[name] = {
            "gateway_on_env_per_s": round(on_tp, 1),
            "gateway_off_env_per_s": round(off_tp, 1),
            "ratio_on_vs_off": round(on_tp / off_tp, 3),
            "sidecar_cpu_ms_per_task_on": round(sc_on, 3),
            "sidecar_cpu_ms_per_task_off": round(sc_off, 3),
            "gateway_cpu_ms_per_task_on": round(gw_on, 3),
            # What reporting costs per task, all told: the gateway's CPU and the sidecar's extra.
            "reporting_cpu_ms_per_task": round(gw_on + sc_on - sc_off, 3),
            "runs_on": [round(r[0]) for r in on],
            "runs_off": [round(r[0]) for r in off],
        }
    print(json.dumps(out, indent=2))
    for k, v in out.items():
        print(
            f"{k}: healthy gateway {v['ratio_on_vs_off']}x of none (target >= 0.9x"
            f"{'; gateway on its own core' if pin else ''}); "
            f"sidecar CPU {v['sidecar_cpu_ms_per_task_on']} ms/task "
            f"(off: {v['sidecar_cpu_ms_per_task_off']}), gateway "
            f"{v['gateway_cpu_ms_per_task_on']}; reporting {v['reporting_cpu_ms_per_task']} ms/task"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts; under a minute")
    ap.add_argument("--gateway", action="store_true", help="healthy gateway vs none (section 4)")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="with --gateway: the gateway on core 1, actor and bench on core 0 (its own pod)",
    )
    ap.add_argument(
        "--status-linger",
        metavar="DURATION",
        help="with --gateway: the sidecar's ASYA_GATEWAY_STATUS_LINGER (default: its own)",
    )
    ap.add_argument(
        "--event-stream",
        choices=("on", "off"),
        help="with --gateway: the sidecar's ASYA_GATEWAY_EVENT_STREAM (default: on)",
    )
    ap.add_argument("--relay", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relay:
        anyio.run(_relay, *args.relay)
    elif args.gateway:
        if args.pin and (os.cpu_count() or 1) < 2:
            ap.error("--pin needs two cores")
        anyio.run(gateway_bench, args.quick, args.pin, args.status_linger, args.event_stream)
    else:
        anyio.run(bench, args.quick)


if __name__ == "__main__":
    main()
