"""A2A SendStreamingMessage vs the native SSE stream, same flow, same mesh, same run.

    .venv/bin/python bench/a2a_bench.py [--tokens N] [--rounds R] [--quick]

`asya dev --route bench` runs this module's `tokens` handler (N `{"partial": true, "text": …}`
FLYs as fast as it can). Each round streams one task natively (`POST /api/v1/mesh` with
`Accept: text/event-stream`) and one through A2A (`SendStreamingMessage` on `/a2a`, flow `dev`),
both read with plain httpx (so the client's own parsing is not what is measured), every
`data:` line decoded, each stream read until the server closes it (both close after the
terminal state; the native reader used to leave at `succeeded`, dropping its connection
mid-response, so every A2A round, and only those, started on a new connection):

- tokens/s: tokens received / (last token − request sent);
- first-token latency: first token received − request sent;
- the gateway process's CPU time per task (Linux /proc), a figure a busy machine moves less.

Medians over the rounds; targets (issue 11): A2A ≥ 0.8× native throughput, first token within
1 ms of native. Needs the integrated gateway (the A2A door mounted, `asya dev` exposing `dev`).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def tokens(payload: Any) -> Any:
    """payload["n"] text tokens as fast as possible, then the payload."""
    n = int(payload.get("n", 1000)) if isinstance(payload, dict) else 1000
    for i in range(n):
        yield "FLY", {"partial": True, "text": f"t{i} "}
        if i % 256 == 255:
            await asyncio.sleep(0)
    yield {"n": n}


def main() -> None:
    import argparse
    import os
    import shutil
    import signal
    import socket
    import statistics
    import subprocess
    import sys
    import tempfile
    import time
    import uuid
    from pathlib import Path

    import anyio
    import httpx
    import msgspec

    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 rounds (make bench)")
    args = ap.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 3)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="asya-a2ab-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    exe = Path(sys.executable).parent / "asya"
    proc = subprocess.Popen(
        [str(exe), "dev", "--route", "bench", "--actor", "bench=bench.a2a_bench:tokens",
         "--port", str(port), "--dir", workdir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    decode = msgspec.json.decode
    gateway: list[int] = []  # the gateway's pid, once the mesh is up

    def cpu_seconds() -> float:
        """The gateway's CPU time so far (all its threads; /proc schedstat, nanoseconds)."""
        total = 0
        for tid in os.listdir(f"/proc/{gateway[0]}/task") if gateway else []:
            with open(f"/proc/{gateway[0]}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9

    def find_gateway() -> None:
        parents: dict[int, list[int]] = {}
        for d in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(
                        int(d)
                    )
            except OSError:
                continue
        todo = list(parents.get(proc.pid, []))
        while todo:
            pid = todo.pop()
            todo += parents.get(pid, [])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"asya-gateway" in f.read():
                        gateway.append(pid)
                        return
            except OSError:
                continue

    async def native(client: httpx.AsyncClient, n: int) -> tuple[float, float, int]:
        got, first, last = 0, 0.0, 0.0
        t0 = time.perf_counter()
        body = {"route": ["bench"], "payload": {"n": n}}
        async with client.stream(
            "POST", f"{url}/api/v1/mesh", json=body, headers={"Accept": "text/event-stream"}
        ) as r:
            event = b""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:].encode()
                elif line.startswith("data: ") and event == b"partial":
                    decode(line[6:])
                    got += 1
                    last = time.perf_counter()
                    first = first or last
                elif line.startswith("data: "):
                    decode(line[6:])  # read to the end, as the A2A side: the server closes
        return (first - t0, got / (last - t0), got) if got else (0.0, 0.0, 0)

    async def a2a(client: httpx.AsyncClient, n: int) -> tuple[float, float, int]:
        got, first, last = 0, 0.0, 0.0
        msg = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"data": {"n": n}}]}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": msg, "metadata": {"skill": "dev"}},
        }
        t0 = time.perf_counter()
        async with client.stream("POST", f"{url}/a2a", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                res = decode(line[6:])["result"]
                upd = res.get("artifactUpdate")
                art = upd["artifact"] if upd is not None else None
                if art is not None and art["artifactId"] == "stream" and art["parts"]:
                    got += 1
                    last = time.perf_counter()
                    first = first or last
        return (first - t0, got / (last - t0), got) if got else (0.0, 0.0, 0)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            card = await client.get(f"{url}/.well-known/agent-card.json")
            if card.status_code != 200:
                raise SystemExit("the gateway does not serve A2A (card 404): needs the integration")
            await native(client, 50)  # warm both paths up
            await a2a(client, 50)
            res: dict[str, list[tuple[float, float, int]]] = {"native": [], "a2a": []}
            cpu: dict[str, list[float]] = {"native": [], "a2a": []}
            for _ in range(args.rounds):
                for k, fn in (("native", native), ("a2a", a2a)):
                    c0 = cpu_seconds()
                    res[k].append(await fn(client, args.tokens))
                    cpu[k].append(cpu_seconds() - c0)
        # rounds in which the mesh delivered no token at all (dropped upstream) do not count
        med = {}
        for k, v in res.items():
            ok = [x for x in v if x[2]] or [(0.0, 0.0, 0)]
            med[k] = (statistics.median(x[0] for x in ok), statistics.median(x[1] for x in ok))
        for k, (ftl, tps) in med.items():
            counts = {x[2] for x in res[k]}
            print(f"{k:>6}: {tps:10.0f} tokens/s   first token {ftl * 1000:7.2f} ms   "
                  f"(tokens received per task: {sorted(counts)})")  # fmt: skip
        ratio = med["a2a"][1] / med["native"][1]
        delta = (med["a2a"][0] - med["native"][0]) * 1000
        if gateway:  # CPU, unlike wall clock, hardly moves with the machine's load
            g = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
            print(f"gateway CPU per task (median): native {g['native']:.1f} ms, "
                  f"A2A {g['a2a']:.1f} ms (+{g['a2a'] - g['native']:.1f} ms)")  # fmt: skip
        print(f"A2A / native throughput: {ratio:.2f}x (target >= 0.8x); "
              f"first token A2A - native: {delta:+.2f} ms (target <= 1 ms)")  # fmt: skip

    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "open http://" in line:
                break
        else:
            raise SystemExit(f"asya dev ended before the mesh was ready (code {proc.wait()})")
        find_gateway()
        anyio.run(run)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
