"""End to end on the real gateway with real sidecars and runtimes: a handler streams N FLYs
through a deliberately slow FLY path; the client's SSE stream gets all N, in order, before
the terminal update (ordering by counting: the terminal waits for the FLYs it announces)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.sidecar.harness import Mesh, wait_for

from .helpers import SseEvent, read_sse
from .test_restart_e2e import GatewayProc

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(90)]

N = 40
FLY_DELAY = 0.4  # seconds each FLY POST is held: the FLYs land well after x-sink's terminal


class SlowFlyProxy:
    """Forwards everything to the gateway; requests carrying FLYs are held `FLY_DELAY` first.
    Records whether a terminal status announced its FLY count."""

    def __init__(self, target: str, *, stamp: int | None = None) -> None:
        self.target = target
        # `stamp`: act as a counting sidecar would (seq on each FLY in yield order, `flies`
        # on the terminal), for sidecars that do not count yet.
        self.stamp = stamp
        self.seq = 0
        self.url = ""
        self.terminal_flies: list[object] = []
        self.client = httpx.AsyncClient(timeout=30)

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        events = json.loads(body) if body else []
        events = events if isinstance(events, list) else [events]
        for ev in events:
            if isinstance(ev, dict) and ev.get("status") in ("succeeded", "failed"):
                if self.stamp is not None:
                    ev.setdefault("data", {})["flies"] = self.stamp
                self.terminal_flies.append((ev.get("data") or {}).get("flies"))
            elif isinstance(ev, dict) and ev.get("type") == "fly" and self.stamp is not None:
                ev["seq"] = self.seq  # requests arrive here in yield order (one POST at a time)
                self.seq += ev.get("n", 1)
        if self.stamp is not None and request.url.path.endswith("/events"):
            body = json.dumps(events if len(events) != 1 else events[0]).encode()
        if any(isinstance(ev, dict) and ev.get("type") == "fly" for ev in events):
            await anyio.sleep(FLY_DELAY)  # the deliberately slow path, not a wait for anything
        r = await self.client.request(
            request.method,
            self.target + request.url.path,
            content=body,
            headers={
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            },
        )
        return Response(r.content, status_code=r.status_code, headers=dict(r.headers))

    def app(self) -> Starlette:
        methods = ["GET", "POST", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.forward, methods=methods)])


@asynccontextmanager
async def serve(proxy: SlowFlyProxy, port: int) -> AsyncIterator[SlowFlyProxy]:
    config = uvicorn.Config(proxy.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await wait_for(lambda: server.started, what="proxy started")
        proxy.url = f"http://127.0.0.1:{port}"
        try:
            yield proxy
        finally:
            server.should_exit = True
            await proxy.client.aclose()


@pytest.mark.parametrize("counting", ["sidecar", "stamped"])
async def test_all_flys_in_order_before_the_terminal_update_despite_a_slow_fly_path(
    counting: str, short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    from .test_restart_e2e import free_port

    mesh = Mesh(short_tmp, subprocess_env)
    proxy_port = free_port()
    env = mesh.env | {
        "ASYA_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{proxy_port}",
        "ASYA_TEST_TERMINAL_WAIT": "10",
    }
    gw = GatewayProc(short_tmp, f"sqlite://{short_tmp}/gw.db", env)
    gw.env["ASYA_NAMESPACE"] = mesh.namespace
    gw.env["ASYA_SQLITE_PATH"] = mesh.db
    try:
        with anyio.fail_after(60):
            await gw.start()
            stamp = N if counting == "stamped" else None
            async with serve(SlowFlyProxy(gw.base, stamp=stamp), proxy_port) as proxy:
                mesh.runtime("flood", "examples.handlers.util:fly_flood")
                mesh.sidecar("flood")
                mesh.sidecar("x-sink", end=True)
                await mesh.wait_declared()  # a create before flood's sidecar declared is a 400
                async with httpx.AsyncClient(timeout=30) as c:
                    r = await c.post(
                        f"{gw.base}/api/v1/mesh", json={"route": ["flood"], "payload": {"n": N}}
                    )
                    tid = r.json()["id"]
                    events: list[SseEvent] = []
                    async with c.stream("GET", f"{gw.base}/stream/{tid}") as s:
                        await read_sse(s, events)
            if proxy.terminal_flies and proxy.terminal_flies[0] is None:
                pytest.skip("this sidecar does not count its FLYs yet (`flies`, `seq`)")
            flys = [e.data["i"] for e in events if e.event == "partial"]
            assert flys == list(range(N))
            assert events[-1].terminal and events[-1].data["status"] == "succeeded"
            assert sum(e.terminal for e in events) == 1
    finally:
        gw.stop()
        await mesh.aclose()
