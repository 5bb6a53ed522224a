"""The sidecars' event stream on the real gateway (uvicorn, the app, its guard) with the
sidecar's real client: each message applied and answered as the POST it stands for."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from asya_sidecar.gateway import GatewayClient
from asya_sidecar.http import Refused, Socket, open_http
from asya_sidecar.metrics import Metrics
from asya_sidecar.reports import fly, status_event
from asya_sidecar.stream import EventStream

from .helpers import running_gateway

pytestmark = pytest.mark.anyio

PATH = "/api/v1/mesh/events"


async def _task(gw: str) -> str:
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{gw}/api/v1/mesh", json={"route": ["a", "b"], "payload": {}})
        r.raise_for_status()
        return str(r.json()["id"])


async def _get(gw: str, task_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{gw}/api/v1/mesh/{task_id}", headers=headers)
        r.raise_for_status()
        return dict(r.json())


async def _ask(sock: Socket, events: Any) -> dict[str, Any]:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    await sock.send(body)
    return dict(json.loads(await sock.receive(5)))


async def test_each_message_is_applied_and_answered_in_order_as_the_post_would_be() -> None:
    async with running_gateway() as g, open_http(connections=4) as http:
        task_id = await _task(g.url)
        sock = await http.websocket(g.url + PATH)
        try:
            received = {"id": task_id, "type": "status", "status": "received", "data": {}}
            processing = {**received, "status": "processing", "data": {"actor": "a"}}
            assert await _ask(sock, [received, processing]) == {"status": 204}
            assert (await _get(g.url, task_id))["status"] == "running"
            # What the POST says of a task it does not know, and of a body it cannot parse,
            # the stream says too; the stream stays open after a refused message.
            unknown = {**received, "id": "no-such-task"}
            assert await _ask(sock, [unknown]) == {"status": 200, "unknown": ["no-such-task"]}
            bad = await _ask(sock, b'{"not": "an array"}')
            assert bad["status"] == 400 and "Expected `array`" in bad["error"]
            flying = {"id": task_id, "type": "fly", "data": {"partial": True, "text": "hi"}}
            assert await _ask(sock, [flying]) == {"status": 204}
        finally:
            await sock.close()


async def test_the_upgrade_is_guarded_as_the_post_is() -> None:
    async with running_gateway(mesh_token="s3cret") as g:
        async with open_http(connections=2) as anonymous:
            with pytest.raises(Refused) as refused:
                await anonymous.websocket(g.url + PATH)
            assert refused.value.status == 403
            with pytest.raises(Refused):  # no other path speaks WebSocket
                await anonymous.websocket(g.url + "/api/v1/mesh/feed")
        auth = {"Authorization": "Bearer s3cret"}
        async with open_http(connections=2, headers=auth) as mesh:
            task_id = await _task(g.url)
            sock = await mesh.websocket(g.url + PATH)
            try:
                ev = {"id": task_id, "type": "status", "status": "received", "data": {}}
                assert await _ask(sock, [ev]) == {"status": 204}
            finally:
                await sock.close()


async def test_the_sidecar_client_sends_its_batches_by_the_stream() -> None:
    async with running_gateway() as g, open_http(connections=8) as http:
        ids = [await _task(g.url) for _ in range(3)]
        metrics = Metrics("memory")
        async with anyio.create_task_group() as tg:
            client = GatewayClient(
                http, tg, metrics, default_url=g.url, buffer=100, event_stream=True
            )
            for task_id in ids:
                lane = client.open(g.url, task_id)
                lane.put(status_event("processing", actor="a", curr="a"))
                for i in range(5):
                    lane.put(fly({"partial": True, "text": str(i)}, seq=i))
                lane.close()
            with anyio.fail_after(5):
                await client.wait_idle()
            await client.close_streams()
            tg.cancel_scope.cancel()
        streamed = metrics.registry.get_sample_value("asya_actor_gateway_streamed_total")
        assert streamed and streamed >= 1
        assert metrics.registry.get_sample_value("asya_actor_fly_forwarded_total") == 15
        for task_id in ids:
            assert (await _get(g.url, task_id))["status"] == "running"


async def test_a_socket_idle_too_long_is_replaced_and_every_message_still_answered() -> None:
    # The server pings idle sockets and drops one whose pong is late; a ping is answered only
    # while the client reads. So a socket idle past `idle` is not reused: with idle=0 every
    # message goes on a new one.
    async with running_gateway() as g, open_http(connections=4) as http:
        task_id = await _task(g.url)
        stream = EventStream(http, g.url, answer_within=5, idle=0)
        ev = {"id": task_id, "type": "status", "status": "received", "data": {}}
        try:
            for _ in range(3):
                assert await stream.send(json.dumps([ev]).encode()) == 204
        finally:
            await stream.close()
