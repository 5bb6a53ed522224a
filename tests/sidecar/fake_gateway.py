"""A real HTTP server on loopback whose answers a test writes as a function (httpx types).

The sidecar's gateway client speaks real HTTP to it (its own aiohttp pool): no transport is
mocked, only the gateway's behaviour is scripted. `answer(request) -> response` may be sync or
async (an async one can hang, to play a slow gateway).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiohttp import web

from asya_sidecar.http import Http, open_http

Answer = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


@asynccontextmanager
async def fake_gateway(answer: Answer, *, connections: int = 64) -> AsyncIterator[tuple[str, Http]]:
    """(base URL, a client for it) while the server runs."""

    async def handle(request: web.Request) -> web.StreamResponse:
        req = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        out: Any = answer(req)
        if inspect.isawaitable(out):
            out = await out
        return web.Response(
            status=out.status_code,
            body=out.content,
            headers={k: v for k, v in out.headers.items() if k.lower() != "content-length"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    # A hanging answer is cut after half a second at the end of the test, not after 60.
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        async with open_http(connections=connections) as http:
            yield f"http://127.0.0.1:{port}", http
    finally:
        await runner.cleanup()
