"""The sidecar's gateway client sends ASYA_GATEWAY_TOKEN on every call (events, the pause
report, the feed, pre-flights), against a real gateway that requires the mesh token."""

from __future__ import annotations

import anyio
import httpx
import pytest

from asya_mesh.events import StatusData, StatusEvent
from asya_sidecar.gateway import GatewayClient, gateway_client
from asya_sidecar.metrics import Metrics

from .helpers import ALICE, MESH_TOKEN, gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def _status(c: httpx.AsyncClient, url: str, tid: str) -> str:
    return str((await c.get(f"{url}/api/v1/mesh/{tid}", headers=ALICE)).json()["status"])


@pytest.mark.parametrize("mesh_port", [False, True])
async def test_the_token_opens_every_sidecar_endpoint(mesh_port: bool) -> None:
    async with gateway(mesh_port=mesh_port) as gw, httpx.AsyncClient() as c:
        report_to = gw.mesh_url or gw.url
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"]}, headers=ALICE)
        tid = r.json()["id"]
        async with gateway_client(
            Metrics("memory"), default_url=report_to, buffer=16, token=MESH_TOKEN
        ) as client:
            feed = client.feed(report_to)
            assert feed is not None
            with anyio.fail_after(10):
                while not feed.connected:  # noqa: ASYNC110  # the feed offers no event
                    await anyio.sleep(0.02)
            # The pre-flight GET, with the same HTTP client (feeds off, so it really GETs).
            getter = GatewayClient(
                client._preflight_http,  # the client gateway_client configured
                client._tg,
                Metrics("memory"),
                default_url=report_to,
                buffer=1,
            )
            assert await getter.preflight(report_to, tid) == "pending"
            events = client.open(report_to, tid)
            events.put(StatusEvent(status="received", data=StatusData(actor="a")))
            events.close()
            await client.wait_idle()
            assert await _status(c, gw.url, tid) == "running"
            paused = StatusEvent(status="paused", data=StatusData(pause={"q": 1}))
            assert await client.report_now(report_to, tid, paused)
            assert await _status(c, gw.url, tid) == "paused"
            # The feed (same token) tells the sidecar the task was canceled.
            assert (await c.delete(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 204
            with anyio.fail_after(10):
                while feed.status(tid) != "canceled":  # noqa: ASYNC110
                    await anyio.sleep(0.02)


async def test_a_wrong_token_is_refused_everywhere() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"]}, headers=ALICE)
        tid = r.json()["id"]
        async with gateway_client(
            Metrics("memory"), default_url=gw.url, buffer=16, token="wrong"
        ) as client:
            assert await client.preflight(gw.url, tid) is None  # refused: carry on
            paused = StatusEvent(status="paused", data=StatusData(pause={}))
            assert not await client.report_now(gw.url, tid, paused, within=3)
            feed = client.feed(gw.url)
            assert feed is not None and not feed.connected
        assert await _status(c, gw.url, tid) == "pending"
