"""Lossless text under pressure: a handler streams 10,000 text FLYs much faster than a (real,
slowed-down) gateway takes them, with the default ASYA_FLY_BUFFER; the sidecar folds what does
not fit into the FLY before it, so the SSE client's concatenated text is the handler's."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .harness import Mesh, console_script, free_port, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

N = 10_000
DELAY = 0.05  # per event POST: ~20 requests/s, far slower than the handler's FLYs


@asynccontextmanager
async def slow_proxy(target: str) -> AsyncIterator[str]:
    """Forwards to the gateway, each event POST held for DELAY; no task feed (404)."""
    async with httpx.AsyncClient(base_url=target, timeout=30) as http:

        async def forward(request: Request) -> Response:
            path = request.url.path
            if path.endswith("/feed"):
                return Response(status_code=404)
            body = await request.body()
            if request.method == "POST" and path.endswith("/events"):
                await anyio.sleep(DELAY)
            r = await http.request(
                request.method,
                path,
                content=body,
                headers={"content-type": request.headers.get("content-type", "")},
            )
            return Response(r.content, status_code=r.status_code, headers=dict(r.headers))

        app = Starlette(routes=[Route("/{p:path}", forward, methods=["GET", "POST"])])
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            await wait_for(lambda: server.started, what="proxy started")
            try:
                yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            finally:
                server.should_exit = True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _metric(port: int, name: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + " "))


async def test_client_sees_every_character_of_a_flood_through_a_slow_gateway(
    mesh: Mesh,
) -> None:
    port, metrics = free_port(), free_port()
    gw = f"http://127.0.0.1:{port}"
    mesh._spawn(
        [console_script("asya-gateway"), "run", "--host", "127.0.0.1", "--port", str(port)],
        mesh.env
        | {
            "ASYA_GATEWAY_DATABASE_URL": f"sqlite:///{mesh.tmp / 'gw.db'}",
            "ASYA_GATEWAY_SUBSCRIBER_BUFFER": "65536",  # the client is not what is tested
        },
        "gateway.log",
    )
    with anyio.fail_after(120):
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client:
            await wait_for(lambda: _listening(port), what="gateway listening")  # after startup
            async with slow_proxy(gw) as proxy:
                mesh.runtime("text", "tests.sidecar.text_handlers:tokens")
                mesh.sidecar(
                    "text", ASYA_GATEWAY_URL=proxy, ASYA_METRICS_ADDR=f"127.0.0.1:{metrics}"
                )
                mesh.sidecar("x-sink", end=True, ASYA_GATEWAY_URL=gw)
                await mesh.wait_declared()  # a create needs its first actor's queue
                texts: list[str] = []
                final: dict[str, object] = {}
                async with client.stream(
                    "POST",
                    f"{gw}/api/v1/mesh",
                    json={"route": ["text"], "payload": {"n": N}},
                    headers={"Accept": "text/event-stream"},
                ) as resp:
                    assert resp.status_code < 300, await resp.aread()
                    buf = ""
                    async for chunk in resp.aiter_text():
                        buf += chunk
                        *events, buf = buf.split("\n\n")
                        for ev in events:
                            lines = ev.split("\n")
                            name = next((ln[7:] for ln in lines if ln.startswith("event: ")), "")
                            data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
                            if name == "partial":
                                texts.append(json.loads(data)["text"])
                            elif name == "update" and json.loads(data)["status"] in (
                                "succeeded",
                                "failed",
                            ):
                                final = json.loads(data)
                        if final:
                            break
    assert final.get("status") == "succeeded", final
    expected = "".join(f"t{i} " for i in range(N))
    assert "".join(texts) == expected  # every character, in order
    assert len(texts) < N  # the gateway was slower: FLYs were folded, not dropped
    assert await _metric(metrics, "asya_actor_fly_dropped_total") == 0
    assert await _metric(metrics, "asya_actor_fly_coalesced_total") > 0
