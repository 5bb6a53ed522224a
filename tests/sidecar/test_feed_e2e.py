"""Cancel reaching a running handler (sidecar-gateway.md step 6) through the gateway's task
feed, and pre-flights answered by the feed instead of a GET."""

from __future__ import annotations

import anyio
import pytest

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_cancel_at_the_gateway_stops_the_running_handler(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(feed_enabled=True)) as gw:
            marker = mesh.tmp / "finally-ran"
            mesh.runtime("hang", "examples.handlers.util:hang")
            mesh.sidecar("hang", ASYA_GATEWAY_URL=gw.url)
            await wait_for(lambda: gw.feed_clients == 1, what="the sidecar on the feed")
            await mesh.send("hang", envelope("c-1", ["hang", "next"], {"marker": str(marker)}))
            await wait_for(lambda: "processing" in gw.statuses("c-1"), what="running")
            gw.push_task("c-1", "canceled")
            await wait_for(marker.exists, what="the handler's finally", within=3)
            await mesh.wait_depth("hang", 0, within=3)  # acked
            for q in ("next", "x-sink", "x-sump"):
                assert await mesh.depth(q) == 0  # nothing routed for it
            # No pre-flight GET while the feed is connected.
            assert not [r for r in gw.requests if r.method == "GET"]
            # The sidecar keeps serving; a task the feed knows as canceled is not run at all.
            gw.push_task("c-2", "canceled")
            await mesh.send("hang", envelope("c-2", ["hang"], {}))
            out = await mesh.take("x-sink")
            assert out["id"] == "c-2" and out["status"]["reason"] == "PreFlightCanceled"


async def test_a_task_canceled_while_the_feed_was_away_stops_its_handler_on_reconnect(
    mesh: Mesh,
) -> None:
    # The feed only says what happens while it is connected: a cancel issued while it was
    # away (the gateway restarting) is found by asking about each envelope in flight.
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(feed_enabled=True, feed_down=True)) as gw:
            marker = mesh.tmp / "finally-ran"
            mesh.runtime("hang", "examples.handlers.util:hang")
            mesh.sidecar("hang", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("hang", envelope("r-1", ["hang", "next"], {"marker": str(marker)}))
            await wait_for(lambda: "processing" in gw.statuses("r-1"), what="running")
            gw.preflight["r-1"] = "canceled"  # canceled while the feed was away
            gw.feed_down = False
            await wait_for(lambda: gw.feed_clients == 1, what="the feed back", within=3)
            await wait_for(marker.exists, what="the handler's finally", within=3)
            await mesh.wait_depth("hang", 0, within=3)  # acked
            for q in ("next", "x-sink", "x-sump"):
                assert await mesh.depth(q) == 0  # nothing routed for it
            asked = [r.path for r in gw.requests if r.method == "GET"]
            assert asked.count("/api/v1/mesh/r-1") == 2  # the pre-flight, then the recheck


async def test_a_task_the_feed_last_saw_paused_is_asked_about_before_it_is_stopped(
    mesh: Mesh,
) -> None:
    # A pause is the one stop that is undone: the resumed envelope arrives while the feed may
    # still say `paused` (the resume's line not here yet, or sent while the feed was away).
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(feed_enabled=True)) as gw:
            mesh.runtime("echo", "examples.handlers.util:echo")
            mesh.sidecar("echo", ASYA_GATEWAY_URL=gw.url)
            await wait_for(lambda: gw.feed_clients == 1, what="the sidecar on the feed")
            gw.push_task("p-1", "paused")
            gw.preflight["p-1"] = "running"  # resumed since
            await mesh.send("echo", envelope("p-1", ["echo"], {"resumed": True}))
            out = await mesh.take("x-sink")
            assert out["id"] == "p-1" and out["status"]["phase"] == "succeeded", out["status"]
            asked = [r.path for r in gw.requests if r.method == "GET"]
            assert asked == ["/api/v1/mesh/p-1"]  # asked once, then the feed knows


async def test_no_feed_at_the_gateway_falls_back_to_preflight(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(preflight={"f-1": "canceled"})) as gw:
            mesh.runtime("echo", "examples.handlers.util:echo")
            mesh.sidecar("echo", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("echo", envelope("f-1", ["echo"], 1))
            out = await mesh.take("x-sink")
            assert out["status"]["reason"] == "PreFlightCanceled"
            assert [r.path for r in gw.requests if r.method == "GET"] == ["/api/v1/mesh/f-1"]


async def test_a_feed_answered_without_sse_falls_back_once(mesh: Mesh) -> None:
    # A gateway answering every GET with JSON (a foreign or older one): the sidecar must not
    # reconnect to it in a loop, and pre-flights go back to GETs.
    with anyio.fail_after(TIMEOUT):
        gw_state = RecordingGateway(feed_not_sse=True, preflight={"n-1": "canceled"})
        async with serve_gateway(gw_state) as gw:
            mesh.runtime("echo", "examples.handlers.util:echo")
            mesh.sidecar("echo", ASYA_GATEWAY_URL=gw.url)
            await wait_for(lambda: gw.feed_requests >= 1, what="the sidecar asking for a feed")
            await mesh.send("echo", envelope("n-1", ["echo"], 1))
            out = await mesh.take("x-sink")
            assert out["status"]["reason"] == "PreFlightCanceled"
            assert [r.path for r in gw.requests if r.method == "GET"] == ["/api/v1/mesh/n-1"]
            assert gw.feed_requests == 1


async def test_a_feed_cut_mid_stream_is_reconnected_not_raised() -> None:
    # A gateway killed while the feed is open: the client sees a broken chunked body (an
    # HTTP error inside the feed's task group). The feed must reconnect, not end the sidecar.
    from anyio.abc import SocketStream

    from asya_sidecar.feed import Feed
    from asya_sidecar.http import open_http

    served = 0

    async def half_a_feed(client: SocketStream) -> None:
        nonlocal served
        served += 1
        async with client:
            await client.receive()  # the request
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            await client.send(head + b"transfer-encoding: chunked\r\n\r\n5\r\n: hi\n")
            # ... and the connection ends in the middle of a chunk

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(TIMEOUT):
        async with listener, open_http(connections=4) as http, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, half_a_feed)
            feed = Feed(http, f"http://127.0.0.1:{port}")
            tg.start_soon(feed.run)
            await wait_for(lambda: served >= 3, what="the feed reconnecting after each cut")
            tg.cancel_scope.cancel()
