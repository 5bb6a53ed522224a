"""kill -9 a real gateway process and start it again on the same store (SQLite, PostgreSQL):
every task answers with its state and result; a reconnecting stream gets the current state."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from asya_mesh.transports import TransportConfig, open_transport, queue_name

from .helpers import (
    SseEvent,
    collect_stream,
    fly,
    post_events,
    read_sse,
    spawn_logged,
    status,
    wait_healthy,
    wait_until,
)
from .stores import BACKENDS, database_url

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(90)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProc:
    def __init__(self, tmp: Path, url: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = url
        self.env = env | {"ASYA_SQLITE_PATH": str(tmp / "queues.db"), "ASYA_NAMESPACE": "r"}
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.tmp / f"gw-{self.port}.log"

    def spawn(self) -> None:
        self.proc = spawn_logged(
            [sys.executable, "-m", "tests.gateway.gateway_proc", str(self.port), self.url],
            self.env,
            self.log,
        )

    async def start(self) -> None:
        self.spawn()
        assert self.proc is not None
        await wait_healthy(self.proc, self.base, self.log, 20)

    async def declare(self, *actors: str) -> None:
        """The test plays these actors' sidecars: declare their queues, as a sidecar does at
        start (a create whose first actor has no queue is refused)."""
        t = await open_transport(TransportConfig.from_env(self.env))
        try:
            for actor in actors:
                await t.declare(queue_name(self.env["ASYA_NAMESPACE"], actor))
        finally:
            await t.aclose()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown path runs
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()


async def read_until_killed(response: httpx.Response, out: list[SseEvent]) -> None:
    with contextlib.suppress(httpx.RemoteProtocolError, httpx.ReadError):
        await read_sse(response, out)


async def seed(c: httpx.AsyncClient, base: str) -> dict[str, str]:
    """Four tasks: finished, failed, paused (with its envelope) and running."""
    made = {}
    for name in ("done", "failed", "paused", "running"):
        r = await c.post(f"{base}/api/v1/mesh", json={"route": ["a"], "payload": 1})
        made[name] = r.json()["id"]
    await post_events(c, base, made["done"], [fly(0), status("succeeded", result=[1])])
    r = await c.post(
        f"{base}/api/v1/mesh/{made['failed']}/events", json=status("failed", error="boom")
    )
    assert r.status_code == 204, r.text
    envelope = {"id": made["paused"], "route": {"prev": [], "curr": "a", "next": []}}
    paused = status("paused", envelope=envelope, pause={"p": 1})
    await post_events(c, base, made["paused"], paused)
    await post_events(c, base, made["running"], status("processing", curr="a"))
    return made


@pytest.mark.parametrize("kind", BACKENDS)
async def test_kill_9_and_restart_on_the_same_store(
    kind: str, short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url(kind, str(short_tmp)) as url:
        gw = GatewayProc(short_tmp, url, subprocess_env)
        try:
            await gw.start()
            await gw.declare("a")
            async with httpx.AsyncClient() as c:
                made = await seed(c, gw.base)
                running = f"{gw.base}/stream/{made['running']}"
                seen: list[SseEvent] = []
                async with c.stream("GET", running) as s, anyio.create_task_group() as tg:
                    tg.start_soon(read_until_killed, s, seen)
                    await wait_until(lambda: seen, 5)
                    gw.kill9()  # mid-stream: no shutdown path runs
                last_id = seen[-1].id
                await gw.start()
                views = {}
                for k, v in made.items():
                    views[k] = (await c.get(f"{gw.base}/api/v1/mesh/{v}")).json()
                assert views["done"]["status"] == "succeeded" and views["done"]["result"] == [1]
                assert views["failed"]["status"] == "failed" and views["failed"]["error"] == "boom"
                assert views["paused"]["status"] == "paused"
                assert views["paused"]["pause"] == {"p": 1}
                assert views["running"]["status"] == "running"
                # A finished task's stream: its terminal update, then the end.
                events = await collect_stream(c, f"{gw.base}/stream/{made['done']}")
                assert len(events) == 1 and events[0].terminal and events[0].data["result"] == [1]
                # A client reconnecting with its Last-Event-ID gets the current state, then live.
                again: list[SseEvent] = []
                headers = {"Last-Event-ID": str(last_id)}
                async with (
                    c.stream("GET", running, headers=headers) as s,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(read_sse, s, again)
                    await wait_until(lambda: again, 5)
                    done = status("succeeded", result=2)
                    await post_events(c, gw.base, made["running"], done)
                assert again[0].data["status"] == "running"
                assert again[0].id is not None and last_id is not None and again[0].id > last_id
                assert again[-1].terminal and again[-1].data["result"] == 2
                # The paused envelope survived: resume enqueues it.
                resume = f"{gw.base}/api/v1/mesh/{made['paused']}/resume"
                r = await c.post(resume, json={"payload": {"ok": 1}})
                assert r.status_code == 202, r.text
        finally:
            gw.stop()
