"""Failure paths with real processes: errors and retries, deadlines, timeouts, runtime loss,
malformed messages, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import time

import anyio
import pytest

from .harness import (
    TIMEOUT,
    Mesh,
    RecordingGateway,
    envelope,
    free_port,
    serve_gateway,
    wait_for,
    wait_for_health,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

RETRY_POLICY = json.dumps({"default": {"maxAttempts": 2, "initialDelay": "1500ms"}})


async def test_handler_error_retried_with_delay_then_sink_failed(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            mesh.runtime("boom", "examples.handlers.failing:explode")
            mesh.sidecar("boom", ASYA_RESILIENCY_POLICIES=RETRY_POLICY, ASYA_GATEWAY_URL=gw.url)
            mesh.sidecar("x-sink", end=True, ASYA_GATEWAY_URL=gw.url)
            await wait_for(lambda: (mesh.tmp / "boom" / "runtime-ready").exists(), what="ready")
            t0 = time.monotonic()
            await mesh.send("boom", envelope("e-1", ["boom", "next"], {"message": "kaput"}))
            await wait_for(lambda: "failed" in gw.statuses("e-1"), what="failure report")
            elapsed = time.monotonic() - t0
            assert elapsed >= 1.4  # the policy's 1.5 s delay was really applied
            # Two attempts: two "processing" reports. The second comes from this actor's
            # sidecar (it lingers up to 5 ms), "failed" from x-sink's: either may land first.
            await wait_for(
                lambda: gw.statuses("e-1").count("processing") == 2, what="both attempts"
            )
            report = next(e for e in gw.event_list("e-1") if e.get("status") == "failed")["data"]
            assert report["error"] == "kaput"
            assert report["error_details"]["type"] == "ValueError"
            assert report["current_actor_name"] == "boom" and report["next"] == ["next"]


async def test_handler_error_without_policy_lands_in_sink(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        mesh.runtime("boom", "examples.handlers.failing:explode")
        mesh.sidecar("boom")
        await mesh.send("boom", envelope("e-2", ["boom"], {"message": "no"}, keep="me"))
        out = await mesh.take("x-sink")
        assert out["status"]["phase"] == "failed" and out["status"]["reason"] == "RuntimeError"
        assert out["status"]["error"]["type"] == "ValueError"
        assert out["payload"]["original_payload"] == {"message": "no"}
        assert out["payload"]["error"] == "processing_error"
        assert out["headers"]["keep"] == "me"


async def test_deadline_passed_never_calls_runtime(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        mesh.runtime("count", "examples.handlers.counter:Counter.handle")
        mesh.sidecar("count")
        late = envelope("late", ["count"], {})
        late["status"] = {"phase": "pending", "deadline_at": "2020-01-01T00:00:00Z"}
        await mesh.send("count", late)
        out = await mesh.take("x-sink")
        assert out["id"] == "late"
        assert (out["status"]["phase"], out["status"]["reason"]) == ("failed", "Timeout")
        assert out["status"]["deadline_at"] == "2020-01-01T00:00:00Z"
        await mesh.send("count", envelope("next", ["count"], {}))
        out = await mesh.take("x-sink")
        assert out["payload"]["count"] == 1  # the handler never saw the late envelope


async def test_timeout_cancels_handler_and_sinks_failed(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        marker = mesh.tmp / "finally-ran"
        mesh.runtime("hang", "examples.handlers.util:hang")
        mesh.sidecar("hang", ASYA_RESILIENCY_ACTOR_TIMEOUT="1s")
        await mesh.send("hang", envelope("h-1", ["hang"], {"marker": str(marker)}))
        out = await mesh.take("x-sink")
        assert (out["status"]["phase"], out["status"]["reason"]) == ("failed", "Timeout")
        await wait_for(marker.exists, what="handler's finally block (it was cancelled)")
        # The sidecar is still serving.
        await mesh.send("hang", envelope("h-2", ["hang"], {}))
        out = await mesh.take("x-sink")
        assert out["id"] == "h-2" and out["status"]["reason"] == "Timeout"


async def test_runtime_killed_mid_stream_goes_to_sump_and_sidecar_recovers(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            rt = mesh.runtime("tok", "examples.handlers.tokens:stream")
            port = free_port()
            mesh.sidecar("tok", ASYA_GATEWAY_URL=gw.url, ASYA_METRICS_ADDR=f"127.0.0.1:{port}")
            await mesh.send("tok", envelope("k-1", ["tok"], {"prompt": "x", "token_delay": 0.3}))
            await wait_for(lambda: gw.flys("k-1"), what="first FLY")
            rt.kill()
            out = await mesh.take("x-sump")
            assert out["id"] == "k-1"
            assert out["payload"]["original_payload"]["prompt"] == "x"
            assert out["status"]["phase"] == "failed"
            # A new envelope sent while the runtime is down waits (not failed): the sidecar
            # says it is waiting for the runtime and takes nothing meanwhile ...
            await wait_for_health(port, 503, "not ready: waiting for the runtime")
            await mesh.send("tok", envelope("k-2", ["tok"], {"prompt": "y", "token_delay": 0}))
            await wait_for_health(port, 503, "not ready: waiting for the runtime")
            assert await mesh.depth("x-sink") == 0 and await mesh.depth("x-sump") == 0
            assert await mesh.depth("tok") == 1
            # ... and is served once the runtime is back.
            mesh.runtime("tok", "examples.handlers.tokens:stream")
            out = await mesh.take("x-sink")
            assert out["id"] == "k-2" and "You asked: y" in out["payload"]["text"]


async def test_malformed_messages_go_to_sump(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        mesh.runtime("echo", "examples.handlers.util:echo")
        mesh.sidecar("echo")
        await mesh.send("echo", b"this is not json")
        await mesh.send(
            "echo", b'{"route": {"prev": [], "curr": "echo", "next": []}, "payload": 1}'
        )
        await mesh.send("echo", envelope("wrong", ["elsewhere"], {}))
        bodies = [await mesh.take("x-sump") for _ in range(3)]
        assert bodies[0]["payload"]["original_body"] == "this is not json"
        assert "missing required 'id'" in bodies[1]["payload"]["error"]
        assert bodies[2]["id"] == "wrong" and bodies[2]["status"]["reason"] == "RouteMismatch"
        await mesh.send("echo", envelope("ok", ["echo"], 1))
        assert (await mesh.take("x-sink"))["id"] == "ok"  # still serving


async def test_sigterm_drains_in_flight_and_loses_nothing(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            mesh.runtime("slow", "examples.handlers.util:sleep")
            sc = mesh.sidecar(
                "slow", ASYA_CONCURRENCY="2", ASYA_GATEWAY_URL=gw.url, ASYA_SHUTDOWN_GRACE="20s"
            )
            for i in range(6):
                await mesh.send("slow", envelope(f"s-{i}", ["slow"], {"sleep": 1.5}))
            await wait_for(
                lambda: sum(gw.statuses(f"s-{i}").count("processing") for i in range(6)) == 2,
                what="two in flight",
            )
            os.kill(sc.pid, signal.SIGTERM)
            code = await anyio.to_thread.run_sync(sc.wait)
            assert code == 0
            done = [await mesh.take("x-sink", within=1) for _ in range(2)]
            assert all(d["status"]["phase"] == "succeeded" for d in done)
            assert await mesh.depth("x-sink") == 0
            assert await mesh.depth("slow") == 4  # the rest are still queued, none lost


async def test_sigterm_after_grace_requeues_in_flight(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        mesh.runtime("slow", "tests.sidecar.handlers:marked_sleep")
        sc = mesh.sidecar("slow", ASYA_SHUTDOWN_GRACE="500ms")
        started = mesh.tmp / "started"
        payload = {"sleep": 30, "started": str(started)}
        await mesh.send("slow", envelope("g-1", ["slow"], payload))
        await wait_for(started.exists, what="the handler runs")
        os.kill(sc.pid, signal.SIGTERM)
        assert await anyio.to_thread.run_sync(sc.wait) == 0
        assert await mesh.depth("slow") == 1  # given back, untouched
        assert await mesh.depth("x-sink") == 0
        back = await mesh.take("slow", within=2)
        assert back["id"] == "g-1" and "status" not in back
        assert back["payload"] == payload


async def test_runtime_that_never_ends_after_cancel_makes_the_sidecar_exit(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        mesh.runtime("stub", "tests.sidecar.handlers:stubborn")
        sc = mesh.sidecar("stub", ASYA_RESILIENCY_ACTOR_TIMEOUT="1s", ASYA_CANCEL_GRACE="1s")
        await mesh.send("stub", envelope("n-1", ["stub"], {}))
        out = await mesh.take("x-sink")
        assert out["id"] == "n-1" and out["status"]["reason"] == "Timeout"
        assert await anyio.to_thread.run_sync(sc.wait) == 3
        assert "did not end a cancelled invocation" in mesh.log("sidecar-stub")
        assert await mesh.depth("stub") == 0  # the envelope was settled before exiting
