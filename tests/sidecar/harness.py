"""E2E helpers: a recording gateway (Starlette + uvicorn in the test process), process control
for `asya-runtime run` / `asya-sidecar run`, and direct access to the SQLite queues."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asya_mesh.transports import Transport, TransportConfig, open_transport, queue_name
from tests.conftest import console_script

TIMEOUT = 30  # seconds; every e2e test runs under fail_after(TIMEOUT)


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float


@dataclass
class RecordingGateway:
    """Records every request. Knobs: per-request delay, the status of the new events endpoint,
    whether JSON-array bodies are rejected, pre-flight answers."""

    delay: float = 0.0
    events_status: int = 204
    reject_batches: bool = False
    preflight: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    feed_enabled: bool = False  # serve GET /api/v1/mesh/feed (else 404, as before the feed)
    feed_not_sse: bool = False  # answer the feed with a plain JSON 200 (a foreign gateway)
    feed_down: bool = False  # answer the feed 503 (a gateway restarting) until set False
    feed_clients: int = 0
    feed_requests: int = 0
    _feeds: list[MemoryObjectSendStream[str]] = field(default_factory=list)

    async def _record(self, request: Request) -> Recorded:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = Recorded(request.method, request.url.path, body, dict(request.headers), time.time())
        if self.delay:
            await anyio.sleep(self.delay)
        self.requests.append(rec)
        return rec

    async def events(self, request: Request) -> Response:
        rec = await self._record(request)
        if self.reject_batches and isinstance(rec.body, list):
            return Response(status_code=422)
        return Response(status_code=self.events_status)

    async def legacy(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200)

    async def get_task(self, request: Request) -> Response:
        await self._record(request)
        task_id = request.path_params["id"]
        if task_id in self.preflight:
            return JSONResponse({"id": task_id, "status": self.preflight[task_id]})
        return Response(status_code=404)

    async def feed(self, request: Request) -> Response:
        self.feed_requests += 1
        if self.feed_not_sse:
            return JSONResponse({"status": "running"})
        if not self.feed_enabled:
            return Response(status_code=404)
        if self.feed_down:
            return Response(status_code=503)
        send, recv = anyio.create_memory_object_stream[str](1000)
        self._feeds.append(send)

        async def body() -> AsyncIterator[str]:
            self.feed_clients += 1
            try:
                yield ": connected\n\n"
                async with recv:
                    async for item in recv:
                        yield item
            finally:
                self.feed_clients -= 1

        return StreamingResponse(body(), media_type="text/event-stream")

    def push_task(self, task_id: str, status: str) -> None:
        """Tell every feed subscriber that `task_id` is now `status`."""
        data = json.dumps({"id": task_id, "status": status})
        for s in self._feeds:
            s.send_nowait(f"event: task\ndata: {data}\n\n")

    def close_feeds(self) -> None:
        for s in self._feeds:
            s.close()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/mesh/feed", self.feed, methods=["GET"]),
                Route("/api/v1/mesh/{id}/events", self.events, methods=["POST"]),
                Route("/api/v1/mesh/{id}", self.get_task, methods=["GET"]),
                Route("/mesh/{id}/fly", self.legacy, methods=["POST"]),
                Route("/mesh/{id}/progress", self.legacy, methods=["POST"]),
            ]
        )

    # -- views ----------------------------------------------------------------------------

    def event_list(self, task_id: str) -> list[dict[str, Any]]:
        """Every event for `task_id` in arrival order, batches flattened; legacy forms mapped."""
        out: list[dict[str, Any]] = []
        for r in self.requests:
            if r.method != "POST" or f"/{task_id}/" not in r.path:
                continue
            if r.path.endswith("/events"):
                if r.path.endswith("/events") and (r.body is None or self.events_status >= 300):
                    continue
                if self.reject_batches and isinstance(r.body, list):
                    continue
                out += r.body if isinstance(r.body, list) else [r.body]
            elif r.path.endswith("/fly"):
                out.append({"type": "fly", "data": r.body, "legacy": True})
            elif r.path.endswith("/progress"):
                out.append({"type": "status", "status": r.body.get("status"), "legacy": True})
        return out

    def flys(self, task_id: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.event_list(task_id) if e.get("type") == "fly"]

    def statuses(self, task_id: str) -> list[str]:
        return [e["status"] for e in self.event_list(task_id) if e.get("type") == "status"]


@asynccontextmanager
async def serve_gateway(gw: RecordingGateway) -> AsyncIterator[RecordingGateway]:
    config = uvicorn.Config(gw.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await wait_for(lambda: server.started, what="recording gateway started")
        port = server.servers[0].sockets[0].getsockname()[1]
        gw.url = f"http://127.0.0.1:{port}"
        try:
            yield gw
        finally:
            gw.close_feeds()  # an open stream would hold uvicorn's shutdown
            server.should_exit = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_health(port: int, code: int, text: str, *, within: float = 15.0) -> str:
    """Poll the sidecar's /health until it answers `code` with `text` in the body."""
    deadline = time.monotonic() + within
    last = ""
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                r = await http.get(f"http://127.0.0.1:{port}/health")
                last = f"{r.status_code} {r.text}"
                if r.status_code == code and text in r.text:
                    return r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            await anyio.sleep(0.05)
    raise AssertionError(f"/health never answered {code} {text!r}; last: {last}")


async def wait_for(cond: Callable[[], Any], *, what: str, within: float = 15.0) -> Any:
    """Poll `cond` until truthy (there is no event to wait on across processes)."""
    deadline = time.monotonic() + within
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await anyio.sleep(0.02)


class Mesh:
    """Processes of one test, all on one SQLite file and one temp dir; killed on close."""

    def __init__(self, tmp: Path, env: dict[str, str], **transport_env: str) -> None:
        self.tmp = tmp
        self.db = str(tmp / "queues.db")
        # Brokers keep queues between runs: a fresh namespace per mesh isolates tests.
        self.namespace = "t" if not transport_env else f"t{uuid.uuid4().hex[:10]}"
        self.env = (
            env
            | {
                "ASYA_SQLITE_PATH": self.db,
                "ASYA_TRANSPORT": "sqlite",
                "ASYA_NAMESPACE": self.namespace,
                "ASYA_METRICS_ADDR": "",
                "ASYA_LOG_FORMAT": "json",
                "ASYA_LOG_LEVEL": "INFO",
            }
            | transport_env
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.consumers: set[str] = set()  # actors with a sidecar spawned
        self.transport: Transport | None = None

    def socket_dir(self, actor: str) -> Path:
        d = self.tmp / actor
        d.mkdir(exist_ok=True)
        return d

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        f = open(self.tmp / log, "ab")  # noqa: SIM115 - the child owns it
        p = subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT)
        f.close()
        self.procs.append(p)
        return p

    def runtime(self, actor: str, handler: str) -> subprocess.Popen[bytes]:
        sock = str(self.socket_dir(actor) / "asya-runtime.sock")
        return self._spawn(
            [console_script("asya-runtime"), "run", handler, "--socket", sock],
            self.env,
            f"runtime-{actor}.log",
        )

    def sidecar(self, actor: str, *, end: bool = False, **extra: str) -> subprocess.Popen[bytes]:
        self.consumers.add(actor)
        env = (
            self.env
            | {"ASYA_ACTOR_NAME": actor, "ASYA_SOCKET_DIR": str(self.socket_dir(actor))}
            | extra
        )
        if end:
            env["ASYA_IS_END_ACTOR"] = "true"
        return self._spawn([console_script("asya-sidecar"), "run"], env, f"sidecar-{actor}.log")

    def log(self, name: str) -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text() if p.exists() else ""

    async def queues(self) -> Transport:
        if self.transport is None:
            self.transport = await open_transport(TransportConfig.from_env(self.env))
        return self.transport

    def q(self, actor: str) -> str:
        return queue_name(self.namespace, actor)

    async def declare(self, *actors: str) -> None:
        """The test consumes these queues itself (`take`): declare them, as a sidecar would,
        so that sends to them (`must_exist`) find them."""
        t = await self.queues()
        for actor in actors:
            await t.declare(self.q(actor))

    async def wait_declared(self, *, within: float = 20.0) -> None:
        """Until every spawned sidecar has declared its queue (its first act, before it
        reports ready): polled, as another process does it."""
        t = await self.queues()
        with anyio.fail_after(within):
            for actor in sorted(self.consumers):
                while not await t.exists(self.q(actor)):  # noqa: ASYNC110
                    await anyio.sleep(0.02)

    async def send(self, actor: str, envelope: dict[str, Any] | bytes) -> None:
        """Send to `actor`'s queue once every spawned sidecar has declared its own (else an
        early hop could find the next actor unknown and send the task to x-sump)."""
        await self.wait_declared()
        t = await self.queues()
        body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        await t.send(self.q(actor), body)

    async def take(self, actor: str, *, within: float = 20.0) -> dict[str, Any]:
        """The next envelope on `actor`'s queue (acked), waiting up to `within` seconds."""
        t = await self.queues()
        d = await t.receive(self.q(actor), wait=within)
        assert d is not None, f"nothing arrived on {actor} within {within}s"
        await d.ack()
        out: dict[str, Any] = json.loads(d.body)
        return out

    async def depth(self, actor: str) -> int:
        t = await self.queues()
        return (await t.depths()).get(self.q(actor), 0)

    async def wait_depth(self, actor: str, n: int, *, within: float = 10.0) -> None:
        """Poll a queue's depth (another process changes it: no event to wait on)."""
        with anyio.fail_after(within):
            while await self.depth(actor) != n:  # noqa: ASYNC110
                await anyio.sleep(0.05)

    async def aclose(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            with suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        if self.transport is not None:
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()


def envelope(task_id: str, route: list[str], payload: Any, **headers: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "route": {"prev": [], "curr": route[0], "next": route[1:]},
        "headers": headers,
        "payload": payload,
    }


def sigterm(p: subprocess.Popen[bytes]) -> None:
    os.kill(p.pid, signal.SIGTERM)
