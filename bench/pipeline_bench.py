"""Envelopes/s through a 2-actor pipeline (a -> b -> x-sink) on each transport, with 1 and 4
replicas (runtime + sidecar pairs) per actor consuming the same queue.

    .venv/bin/python bench/pipeline_bench.py [--quick] [--transports sqlite,rabbitmq,sqs]

Real processes: `asya-runtime run` with a trivial async handler (this file's `step`) and
`asya-sidecar run` per replica; this process fills the first queue and drains x-sink. Each
figure is N envelopes sent at once after a warm-up, from the send to the last arrival in
x-sink. Ratios are against the 1-replica SQLite figure of the same run. RabbitMQ and SQS
(moto) come from `services.sh env` (RABBITMQ_URL, SQS_ENDPOINT_URL); a missing broker is
reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asya_mesh.transports import TransportConfig, open_transport, queue_name  # noqa: E402
from asya_runtime.wire import Envelope, Route  # noqa: E402

BIN = Path(sys.executable).parent
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
SQS_ENDPOINT = os.environ.get("SQS_ENDPOINT_URL", "http://127.0.0.1:5000")
CONCURRENCY = 4  # per sidecar


async def step(payload: Any) -> Any:
    """The trivial handler: count the hop."""
    return {"i": payload["i"], "hops": payload.get("hops", 0) + 1}


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _transport(kind: str, root: Path) -> tuple[dict[str, str], TransportConfig] | None:
    ns = f"b{uuid.uuid4().hex[:8]}"
    env = {"ASYA_TRANSPORT": kind, "ASYA_NAMESPACE": ns}
    cfg: dict[str, Any] = {"kind": kind, "namespace": ns}
    if kind == "sqlite":
        env["ASYA_SQLITE_PATH"] = cfg["sqlite_path"] = str(root / "q.db")
    elif kind == "rabbitmq":
        if not _reachable(5672):
            return None
        env["ASYA_RABBITMQ_URL"] = cfg["rabbitmq_url"] = RABBITMQ_URL
        env["ASYA_RABBITMQ_EXCHANGE"] = cfg["rabbitmq_exchange"] = f"asya-{ns}"
    elif kind == "sqs":
        if not _reachable(5000):
            return None
        env["ASYA_SQS_ENDPOINT"] = cfg["sqs_endpoint"] = SQS_ENDPOINT
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(k, "testing")
            env[k] = os.environ[k]
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        env["ASYA_SQS_WAIT_TIME_SECONDS"] = "1"
    return env, TransportConfig(**cfg)


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


async def _measure(kind: str, replicas: int, n: int) -> float | None:
    root = Path(tempfile.mkdtemp(prefix="asya-pb-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        found = _transport(kind, root)
        if found is None:
            return None
        t_env, cfg = found
        base = {
            **os.environ,
            **t_env,
            "ASYA_METRICS_ADDR": "",
            "ASYA_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
        }
        for actor in ("a", "b"):
            for r in range(replicas):
                d = root / f"{actor}{r}"
                d.mkdir()
                procs.append(
                    _start(
                        [
                            str(BIN / "asya-runtime"),
                            "run",
                            "pipeline_bench:step",
                            "--socket",
                            str(d / "rt.sock"),
                        ],
                        base,
                        d / "runtime.log",
                    )
                )
                procs.append(
                    _start(
                        [str(BIN / "asya-sidecar"), "run"],
                        {
                            **base,
                            "ASYA_ACTOR_NAME": actor,
                            "ASYA_SOCKET_DIR": str(d),
                            "ASYA_SOCKET_NAME": "rt.sock",
                            "ASYA_CONCURRENCY": str(CONCURRENCY),
                        },
                        d / "sidecar.log",
                    )
                )
        t = await open_transport(cfg, concurrency=64)
        try:
            # The bench's envelopes may come before a loaded machine has started b's sidecar:
            # an output for an undeclared queue goes to x-sump, so declare the route first.
            for q in ("a", "b", "x-sink"):
                await t.declare(queue_name(cfg.namespace, q))

            def envelopes(count: int) -> list[tuple[str, bytes]]:
                return [
                    (
                        queue_name(cfg.namespace, "a"),
                        msgspec.json.encode(
                            Envelope(
                                id=str(uuid.uuid4()),
                                route=Route(prev=[], curr="a", next=["b"]),
                                payload={"i": i},
                            )
                        ),
                    )
                    for i in range(count)
                ]

            async def arrive(count: int, limit: float) -> None:
                got = 0
                deadline = time.monotonic() + limit
                while got < count:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{kind} x{replicas}: {got}/{count} arrived")
                    d = await t.receive(queue_name(cfg.namespace, "x-sink"), wait=0.5)
                    if d is not None:
                        await d.ack()
                        got += 1

            await t.send_many(envelopes(4 * replicas * CONCURRENCY))  # warm-up: all connected
            await arrive(4 * replicas * CONCURRENCY, 120)
            batch = envelopes(n)
            t0 = time.perf_counter()
            await t.send_many(batch)
            await arrive(n, 600)
            return n / (time.perf_counter() - t0)
        finally:
            await t.aclose()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches: under a minute")
    parser.add_argument("--transports", default="sqlite,rabbitmq,sqs")
    parser.add_argument("-n", type=int, default=0, help="envelopes per figure")
    args = parser.parse_args()
    kinds = [k for k in args.transports.split(",") if k]
    rows: list[tuple[str, int, float | None, int]] = []
    for kind in kinds:
        for replicas in (1, 4):
            n = args.n or (
                (150 if kind != "sqs" else 80) if args.quick else (2000 if kind != "sqs" else 600)
            )
            rate = anyio.run(_measure, kind, replicas, n)
            rows.append((kind, replicas, rate, n))
            shown = "skipped (broker not reachable)" if rate is None else f"{rate:8.1f} env/s"
            print(f"  {kind:<9} x{replicas}: {shown}", file=sys.stderr, flush=True)
    base = next((r for k, rep, r, _ in rows if k == "sqlite" and rep == 1 and r), None)
    print(
        f"\n2-actor pipeline, trivial async handler, concurrency {CONCURRENCY} per sidecar"
        f"{' (--quick)' if args.quick else ''}"
    )
    print(f"{'transport':<10} {'replicas':>8} {'envelopes':>9} {'env/s':>9} {'vs sqlite x1':>13}")
    for kind, replicas, rate, n in rows:
        if rate is None:
            print(f"{kind:<10} {replicas:>8} {n:>9} {'skipped':>9} {'-':>13}")
            continue
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"{kind:<10} {replicas:>8} {n:>9} {rate:>9.1f} {ratio:>13}")


if __name__ == "__main__":
    main()
