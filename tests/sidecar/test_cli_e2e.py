"""The user's view: `asya-sidecar queue send|receive|ls`, /metrics and /health, x-sump reports."""

from __future__ import annotations

import json
import socket
import subprocess

import anyio
import httpx
import pytest

from tests.conftest import console_script

from .harness import TIMEOUT, Mesh, RecordingGateway, envelope, serve_gateway, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    def go() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script("asya-sidecar"), *args],
            env=mesh.env,
            capture_output=True,
            text=True,
            timeout=20,
        )

    return await anyio.to_thread.run_sync(go)


async def test_queue_tools_and_metrics(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        port = free_port()
        mesh.runtime("tokens", "examples.handlers.tokens:stream")
        mesh.sidecar("tokens", ASYA_METRICS_ADDR=f"127.0.0.1:{port}")
        await mesh.declare("echo")  # the test is echo's consumer (`queue receive` below)
        await mesh.wait_declared()
        sent = await cli(
            mesh, "queue", "send", "tokens", '{"prompt": "hi", "token_delay": 0}', "--next", "echo"
        )
        assert sent.returncode == 0, sent.stderr
        task_id = sent.stdout.strip()
        got = await cli(mesh, "queue", "receive", "echo", "--wait", "15")
        assert got.returncode == 0, got.stderr
        env = json.loads(got.stdout.splitlines()[0])
        assert env["id"] == task_id and env["route"]["prev"] == ["tokens"]
        assert "You asked: hi" in env["payload"]["text"]
        await cli(mesh, "queue", "send", "nobody", "1")
        ls = await cli(mesh, "queue", "ls")
        depths = dict(line.split() for line in ls.stdout.splitlines()[1:])
        assert depths["asya-t-nobody"] == "1" and depths["asya-t-echo"] == "0"
        empty = await cli(mesh, "queue", "receive", "echo", "--wait", "0.2")
        assert empty.returncode == 1
        async with httpx.AsyncClient() as http:
            health = await http.get(f"http://127.0.0.1:{port}/health")
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert health.status_code == 200
        for name in (
            "asya_actor_messages_received_total",
            "asya_actor_messages_processed_total",
            "asya_actor_messages_sent_total",
            "asya_actor_fly_dropped_total",
            "asya_actor_runtime_execution_duration_seconds_bucket",
            "asya_actor_active_messages",
        ):
            assert name in text
        assert (
            'asya_actor_messages_sent_total{destination_queue="asya-t-echo",'
            'message_type="routing"} 1.0'
        ) in text


async def test_bad_configuration_is_a_clear_error(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        r = await cli(mesh, "run", "--actor-name", "a", "--actor-timeout", "soon")
        assert r.returncode == 2 and "ASYA_RESILIENCY_ACTOR_TIMEOUT" in r.stderr


async def test_sump_end_actor_reports_failure(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve_gateway(RecordingGateway()) as gw:
            mesh.runtime("echo", "examples.handlers.util:echo")
            mesh.sidecar("echo", ASYA_GATEWAY_URL=gw.url)
            mesh.sidecar("x-sump", end=True, ASYA_GATEWAY_URL=gw.url)
            await mesh.send("echo", envelope("m-1", ["elsewhere"], {}))
            await wait_for(lambda: "failed" in gw.statuses("m-1"), what="sump report")
            report = next(e for e in gw.event_list("m-1") if e.get("status") == "failed")
            assert "Route mismatch" in report["data"]["error"]
            await mesh.wait_depth("x-sump", 0)  # reported, then acked
