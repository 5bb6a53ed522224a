"""What the sidecar POSTs to a (real HTTP) gateway: batching, fallbacks, a dead gateway."""

from __future__ import annotations

import socket
import time

import anyio
import pytest

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FLOOD = "examples.handlers.util:fly_flood"


async def test_slow_gateway_gets_batches_in_order_and_routing_is_not_delayed(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(delay=0.2)) as gw:
            mesh.runtime("flood", FLOOD)
            mesh.sidecar("flood", ASYA_GATEWAY_URL=gw.url)
            t0 = time.monotonic()
            await mesh.send("flood", envelope("b-1", ["flood"], {"n": 300}))
            out = await mesh.take("x-sink")
            routed_after = time.monotonic() - t0
            assert out["payload"] == {"n": 300}
            await wait_for(lambda: len(gw.flys("b-1")) == 300, what="all 300 FLYs")
            done_after = time.monotonic() - t0
            # FLY order is the yield order, nothing lost, nothing duplicated.
            assert [f["i"] for f in gw.flys("b-1")] == list(range(300))
            batches = [r for r in gw.requests if isinstance(r.body, list)]
            assert batches, "FLYs piling up behind a slow POST must be batched"
            posts = [r for r in gw.requests if r.method == "POST"]
            assert len(posts) < 50  # one-per-event would be 300+ requests at 0.2 s each
            # The envelope was routed long before the slow gateway had everything.
            assert routed_after < done_after


async def test_batch_rejected_falls_back_to_one_event_per_request(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(delay=0.05, reject_batches=True)) as gw:
            mesh.runtime("flood", FLOOD)
            mesh.sidecar("flood", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("flood", envelope("b-2", ["flood"], {"n": 60}))
            await mesh.take("x-sink")
            await wait_for(lambda: len(gw.flys("b-2")) == 60, what="all FLYs one by one")
            assert [f["i"] for f in gw.flys("b-2")] == list(range(60))
            rejected = [r for r in gw.requests if isinstance(r.body, list)]
            assert len(rejected) == 1  # learned once, then single events only


async def test_404_falls_back_to_legacy_endpoints(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway(events_status=404)) as gw:
            mesh.runtime("tok", "examples.handlers.tokens:stream")
            mesh.sidecar("tok", ASYA_GATEWAY_URL=gw.url)
            await mesh.send("tok", envelope("l-1", ["tok"], {"prompt": "x", "token_delay": 0.01}))
            out = await mesh.take("x-sink")
            await wait_for(lambda: "completed" in gw.statuses("l-1"), what="legacy progress")
            legacy = [r for r in gw.requests if r.path == "/mesh/l-1/fly"]
            # Bare FLY dicts, in yield order, re-assembling the final text.
            assert all(r.body["partial"] is True for r in legacy)
            assert "".join(r.body["text"] for r in legacy) == out["payload"]["text"]
            progress = [r.body["status"] for r in gw.requests if r.path == "/mesh/l-1/progress"]
            assert progress == ["received", "processing", "completed"]


async def test_dead_gateway_does_not_slow_routing(mesh: Mesh) -> None:
    # A gateway that accepts connections and never answers: the worst kind of dead.
    with socket.socket() as blackhole, anyio.fail_after(TIMEOUT):
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(512)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        mesh.runtime("flood", FLOOD)
        mesh.sidecar("flood", ASYA_GATEWAY_URL=url)
        # Warm-up (runtime start-up, and the one pre-flight that times out).
        await mesh.send("flood", envelope("d-0", ["flood"], {"n": 5}))
        await mesh.take("x-sink")
        t0 = time.monotonic()
        for i in range(10):
            await mesh.send("flood", envelope(f"d-{i + 1}", ["flood"], {"n": 50}))
        for _ in range(10):
            await mesh.take("x-sink")
        # Each POST to the dead gateway waits 5 s; routing 10 envelopes must not.
        assert time.monotonic() - t0 < 4.0


async def test_unsafe_gateway_header_is_ignored(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            mesh.runtime("tok", "examples.handlers.util:fly_flood")
            mesh.sidecar("tok", ASYA_GATEWAY_URL=gw.url)
            env = envelope("s-1", ["tok"], {"n": 3}, **{"x-asya-gateway-url": "file:///etc/passwd"})
            await mesh.send("tok", env)
            await mesh.take("x-sink")
            # The configured gateway is used instead of the unsafe header.
            await wait_for(lambda: len(gw.flys("s-1")) == 3, what="FLYs at the env gateway")
            off = envelope("s-2", ["tok"], {"n": 3}, **{"x-asya-mesh-status": "off"})
            await mesh.send("tok", off)
            await mesh.take("x-sink")
            assert not [r for r in gw.requests if "s-2" in r.path]
