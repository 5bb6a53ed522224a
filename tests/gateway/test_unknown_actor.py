"""A create whose first actor has no queue, over HTTP on the real embedded queue: 400 naming the
actor and the queue (plain and streaming creates), nothing enqueued, no subscriber left behind;
once a consumer declared the queue, the same create is accepted."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
import uvicorn

from asya_gateway import GatewayConfig, create_app
from asya_mesh.transports import TransportConfig, open_transport

from .helpers import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, TransportConfig, object]]:
    tmp = tempfile.mkdtemp(prefix="gwu-", dir="/tmp")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    transport = TransportConfig(kind="sqlite", sqlite_path=f"{tmp}/queues.db", namespace="u")
    app = create_app(GatewayConfig(port=port, transport=transport))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await wait_until(lambda: server.started, 10)
            yield f"http://127.0.0.1:{port}", transport, app.state.registry
            server.should_exit = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_unknown_first_actor_is_a_400_naming_actor_and_queue(
    gateway: tuple[str, TransportConfig, object],
) -> None:
    url, config, registry = gateway
    t = await open_transport(config)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            r = await c.post("/api/v1/mesh", json={"route": ["ghost", "b"], "payload": 1})
            assert r.status_code == 400
            message = r.json()["error"]
            assert "'ghost'" in message and "'asya-u-ghost'" in message, message
            assert not await t.exists("asya-u-ghost")  # the refused send declared nothing

            streamed = await c.post(
                "/api/v1/mesh",
                json={"route": ["ghost"], "payload": 1},
                headers={"Accept": "text/event-stream"},
            )
            assert streamed.status_code == 400 and "'asya-u-ghost'" in streamed.text
            assert registry.stats()["subscribers"] == 0  # type: ignore[attr-defined]

            # Only the first actor is checked: "b" has no queue either, but is not asked.
            await t.declare("asya-u-ghost")  # what ghost's sidecar does at start
            ok = await c.post("/api/v1/mesh", json={"route": ["ghost", "b"], "payload": 1})
            assert ok.status_code == 201, ok.text
            d = await t.receive("asya-u-ghost", wait=5)
            assert d is not None and ok.json()["id"].encode() in d.body
            await d.ack()
    finally:
        await t.aclose()
