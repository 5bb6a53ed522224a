"""Client and server CPU per request: httpx vs aiohttp vs a raw HTTP/1.1 client vs a
WebSocket message, against one server.

    .venv/bin/python bench/http_clients_bench.py [--quick] [--requests N]

Why: a sidecar with a healthy gateway makes one `POST /api/v1/mesh/events` per batch of
events, and its extra CPU over routing alone was nearly all in its HTTP client (py-spy). This
measures what one such POST costs each client, as user+system CPU of this process: the same
small JSON body to the same server (uvicorn on httptools, a trivial ASGI app answering 202),
which runs in its own process; one keep-alive connection, requests one after the other, the
clients alternated for two rounds. The floor is the raw client (asyncio streams, one write and
one read per request): what any client must at least spend. `ws` sends the same body as one
message on a WebSocket (aiohttp's client; uvicorn's websockets-sansio server) and reads the
answer, as the sidecar's event stream does; the server's CPU per request (from /proc) is
printed beside each client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

_SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": b'{"status":202}'})
        return
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", http="httptools",
            ws="websockets-sansio")
"""
# Three tasks' status events, as a sidecar batches them.
BODY = json.dumps(
    [{"id": f"t{i}", "type": "status", "status": "processing", "actor": "g"} for i in range(3)]
).encode()
HEADERS = {"content-type": "application/json"}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PID = 0


def _server_cpu() -> float:
    with open(f"/proc/{SERVER_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(one: Callable[[], Awaitable[None]], n: int) -> tuple[float, float, float]:
    """(client CPU µs per request, requests/s, server CPU µs per request) for `n` calls of
    `one` after 100 warm-up calls."""
    for _ in range(100):
        await one()
    c0, s0, t0 = _cpu(), _server_cpu(), time.perf_counter()
    for _ in range(n):
        await one()
    took = time.perf_counter() - t0
    return (_cpu() - c0) / n * 1e6, n / took, (_server_cpu() - s0) / n * 1e6


async def with_httpx(url: str, n: int) -> tuple[float, float, float]:
    import httpx

    async with httpx.AsyncClient() as c:

        async def one() -> None:
            (await c.post(url, content=BODY, headers=HEADERS)).raise_for_status()

        return await _measure(one, n)


async def with_aiohttp(url: str, n: int) -> tuple[float, float, float]:
    import aiohttp

    async with aiohttp.ClientSession() as c:

        async def one() -> None:
            async with c.post(url, data=BODY, headers=HEADERS) as r:
                r.raise_for_status()
                await r.read()

        return await _measure(one, n)


async def with_ws(url: str, n: int) -> tuple[float, float, float]:
    import aiohttp

    async with aiohttp.ClientSession() as c, c.ws_connect(url) as ws:

        async def one() -> None:
            await ws.send_bytes(BODY)
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"unexpected {msg.type}")

        return await _measure(one, n)


async def with_raw(url: str, n: int) -> tuple[float, float, float]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    r, w = await asyncio.open_connection(host, int(port))
    req = (
        b"POST /api/v1/mesh/events HTTP/1.1\r\nhost: %b\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (host.encode(), len(BODY))
    ) + BODY

    async def one() -> None:
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
        size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await r.readexactly(size)

    try:
        return await _measure(one, n)
    finally:
        w.close()


async def main_async(port: int, n: int) -> None:
    url = f"http://127.0.0.1:{port}/api/v1/mesh/events"
    for _ in range(200):  # until it listens
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    res: dict[str, list[tuple[float, float, float]]] = {}
    clients = (("raw", with_raw), ("httpx", with_httpx), ("aiohttp", with_aiohttp), ("ws", with_ws))
    for _ in range(2):
        for name, f in clients:
            res.setdefault(name, []).append(await f(url, n))
    floor = min(r[0] for r in res["raw"])
    for name, runs in res.items():
        us = min(r[0] for r in runs)
        rate = max(r[1] for r in runs)
        server = min(r[2] for r in runs)
        what = "message" if name == "ws" else "POST"
        print(
            f"{name:8s} client CPU per {what:7s} {us:7.1f} us = {us / floor:5.2f}x the raw "
            f"floor; server {server:6.1f} us; {rate:,.0f}/s on one connection"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests; a few seconds")
    ap.add_argument("--requests", type=int, default=0, help="requests per client per round")
    args = ap.parse_args()
    n = args.requests or (1000 if args.quick else 4000)
    print(f"python {sys.version.split()[0]}; {n} POSTs per client per round, 2 rounds (best)")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    global SERVER_PID
    SERVER_PID = server.pid
    try:
        asyncio.run(main_async(port, n))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
