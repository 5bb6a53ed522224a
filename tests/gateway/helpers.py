"""Test helpers: an in-process gateway on a real socket, and a small SSE client."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import uvicorn
from anyio.abc import TaskGroup

from asya_gateway import GatewayConfig, TaskEngine, TaskRegistry, create_app

from .stores import database_url


@dataclass
class SseEvent:
    event: str
    data: Any
    id: int | None
    at: float  # monotonic arrival time

    @property
    def terminal(self) -> bool:
        return self.event == "update" and self.data.get("status") in {
            "succeeded",
            "failed",
            "canceled",
        }


@dataclass
class Gateway:
    url: str
    registry: TaskRegistry
    engine: TaskEngine
    enqueued: list[tuple[str, bytes]] = field(default_factory=list)


async def wait_until(cond: Callable[[], object], limit: float = 5.0, step: float = 0.01) -> None:
    """Poll `cond` until true (for state with no event to wait on), failing after `limit` s."""
    with anyio.fail_after(limit):
        while not cond():  # noqa: ASYNC110  # polled on purpose: no event to wait on here
            await anyio.sleep(step)


@contextlib.asynccontextmanager
async def running_gateway(
    sndbuf: int = 0, app_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """uvicorn serving `create_app` in this event loop on an ephemeral port.

    `sndbuf` shrinks the kernel send buffer of accepted connections (inherited from the
    listening socket), so a client that stops reading blocks the server quickly.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = GatewayConfig(port=port, **overrides)
    enqueued: list[tuple[str, bytes]] = []

    async def enqueue(queue: str, body: bytes) -> None:
        enqueued.append((queue, body))

    tmp = tempfile.mkdtemp(prefix="gw-", dir="/tmp")
    # ASYA_TEST_STORE=postgres runs the HTTP tests on a fresh PostgreSQL database and its bus
    # (four test_sse tests assume the per-task ids 1, 2, … of the single-process gateway).
    kind = os.environ.get("ASYA_TEST_STORE", "sqlite")
    async with database_url(kind, tmp) as url:
        options = {"database_url": url} | (app_options or {})
        async with _serve(sock, config, enqueue, enqueued, options) as gw:
            yield gw
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.asynccontextmanager
async def _serve(
    sock: socket.socket,
    config: GatewayConfig,
    enqueue: Callable[[str, bytes], Any],
    enqueued: list[tuple[str, bytes]],
    options: dict[str, Any],
) -> AsyncIterator[Gateway]:
    port = sock.getsockname()[1]
    app = create_app(config, enqueue=enqueue, **options)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    gw = Gateway(f"http://127.0.0.1:{port}", app.state.registry, app.state.engine, enqueued)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        await wait_until(lambda: server.started, 10)
        try:
            yield gw
        finally:
            gw.registry.close_all()
            server.should_exit = True
    sock.close()


async def read_sse(
    response: httpx.Response, events: list[SseEvent], comments: list[str] | None = None
) -> None:
    """Append each event of an SSE response to `events` as it arrives, until the server closes."""
    name, data, eid = "message", [], None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                events.append(
                    SseEvent(name, msgspec.json.decode("\n".join(data)), eid, time.monotonic())
                )
            name, data, eid = "message", [], None
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line[1:].strip())
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                eid = int(value)


async def collect_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> list[SseEvent]:
    events: list[SseEvent] = []
    async with client.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, resp.status_code
        await read_sse(resp, events)
    return events


async def post_events(client: httpx.AsyncClient, base: str, task_id: str, body: Any) -> int:
    r = await client.post(f"{base}/api/v1/mesh/{task_id}/events", json=body)
    return r.status_code


def spawn_logged(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A gateway process writing to `log_path` (appended: restarts share one log)."""
    from tests.conftest import ROOT

    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(
    proc: subprocess.Popen[bytes], base: str, log_path: Path, limit: float = 30.0
) -> None:
    """Until `base/health` answers 200; fails with the process's log if it exits first."""
    async with httpx.AsyncClient() as c:
        with anyio.fail_after(limit):
            while True:
                try:
                    if (await c.get(f"{base}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:  # exited: its log says why (read once, at the end)
                    raise AssertionError(log_path.read_text())  # noqa: ASYNC240
                await anyio.sleep(0.05)  # a process's readiness has no event to wait on


def fly(i: int) -> dict[str, Any]:
    return {"type": "fly", "data": {"partial": True, "text": f"t{i}"}}


def status(state: str, **data: Any) -> dict[str, Any]:
    return {"type": "status", "status": state, "data": data}


async def start_task(client: httpx.AsyncClient, base: str, route: list[str] | None = None) -> str:
    r = await client.post(f"{base}/api/v1/mesh", json={"route": route or ["a"], "payload": {}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


__all__ = [
    "Gateway",
    "SseEvent",
    "TaskGroup",
    "collect_stream",
    "fly",
    "post_events",
    "read_sse",
    "running_gateway",
    "spawn_logged",
    "start_task",
    "status",
    "wait_healthy",
    "wait_until",
]
