"""Upstream Asya's runtime as an optional peer of `runtime_bench.py` (`--upstream FILE`).

Upstream's runtime is one file, `src/asya-runtime/asya_runtime.py` in deliveryhero/asya; it is
not on the package registries, so the bench runs it only when given a copy. It serves
`POST /invoke` (HTTP/1.0, one request per connection, one request at a time) on a Unix socket,
with the envelope as JSON, and runs an `async def` handler with `asyncio.run` per envelope.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_ENVELOPE = json.dumps(
    {"id": "bench", "route": {"prev": [], "curr": "a", "next": ["b"]}, "payload": {"text": "hello"}}
).encode()
_REQUEST = (
    b"POST /invoke HTTP/1.1\r\nHost: asya-runtime\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_ENVELOPE)}\r\n\r\n".encode()
    + _ENVELOPE
)


def start(file: Path, handler: str, socket_dir: Path, pythonpath: Path) -> subprocess.Popen[bytes]:
    """Start upstream's runtime on `socket_dir/rt.sock`; return once it says it is ready."""
    socket_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH=str(pythonpath),
        ASYA_HANDLER=handler,
        ASYA_SOCKET_DIR=str(socket_dir),
        ASYA_SOCKET_NAME="rt.sock",
        ASYA_LOG_LEVEL="WARNING",  # the same level the bench gives ours
    )
    proc = subprocess.Popen([sys.executable, str(file)], env=env)
    ready = socket_dir / "runtime-ready"
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"upstream runtime {file} did not start (exit {proc.returncode})")
        time.sleep(0.02)
    return proc


async def invoke(path: str) -> None:
    """One envelope: a connection, the request, the whole response; a non-200 answer raises."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(_REQUEST)
    answer = await reader.read()  # HTTP/1.0: the server closes after the response
    writer.close()
    if not answer.startswith(b"HTTP/1.0 200"):
        raise SystemExit(f"upstream runtime answered {answer[:80]!r}")


async def cpu_per_envelope(
    path: str, seconds: float, cpu_seconds: Callable[[], float], conns: int
) -> tuple[float, float]:
    """(envelopes/s, upstream's CPU µs per envelope) with `conns` clients kept busy."""
    for _ in range(50):
        await invoke(path)
    counts = [0] * conns
    end = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        while time.perf_counter() < end:
            await invoke(path)
            counts[i] += 1

    t0 = time.perf_counter()
    cpu0 = cpu_seconds()
    await asyncio.gather(*(loop(i) for i in range(conns)))
    n = sum(counts)
    return n / (time.perf_counter() - t0), (cpu_seconds() - cpu0) / n * 1e6
