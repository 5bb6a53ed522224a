"""A gateway with keys and a mesh token, served over real HTTP (uvicorn) in this event loop."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

from asya_gateway import GatewayConfig, create_app
from asya_gateway.flows import Flow, Flows
from tests.gateway.helpers import wait_until

KEYS = "alice:key-alice-0123456789,bob:key-bob-9876543210"
ALICE = {"Authorization": "Bearer key-alice-0123456789"}
ALICE_X = {"X-API-Key": "key-alice-0123456789"}
BOB = {"Authorization": "Bearer key-bob-9876543210"}
WRONG = {"Authorization": "Bearer not-a-key"}
MESH_TOKEN = "mesh-token-abcdef0123456789"
MESH = {"Authorization": f"Bearer {MESH_TOKEN}"}
FLOWS = Flows([Flow(name="chat", route=["tokens"], description="streams tokens", timeout=30)])


@dataclass
class Served:
    url: str
    mesh_url: str | None
    app: Any
    enqueued: list[tuple[str, bytes]] = field(default_factory=list)


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@contextlib.asynccontextmanager
async def gateway(*, mesh_port: bool = False, **overrides: Any) -> AsyncIterator[Served]:
    """`create_app` on an ephemeral port (and a mesh listener with `mesh_port`), SQLite store."""
    overrides = {"api_keys": KEYS, "mesh_token": MESH_TOKEN} | overrides
    store = overrides.pop("database_url", None)
    main, mesh = _sock(), (_sock() if mesh_port else None)
    port = main.getsockname()[1]
    mport = mesh.getsockname()[1] if mesh is not None else None
    config = GatewayConfig(port=port, mesh_port=mport, **overrides)
    tmp = tempfile.mkdtemp(prefix="auth-", dir="/tmp")
    enqueued: list[tuple[str, bytes]] = []

    async def enqueue(queue: str, body: bytes) -> None:
        enqueued.append((queue, body))

    app = create_app(
        config, enqueue=enqueue, database_url=store or f"sqlite://{tmp}/gw.db", flows=FLOWS
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    served = Served(
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{mport}" if mport else None,
        app,
        enqueued,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [s for s in (main, mesh) if s is not None])
        await wait_until(lambda: server.started, 10)
        try:
            yield served
        finally:
            app.state.registry.close_all()
            server.should_exit = True
    main.close()
    if mesh is not None:
        mesh.close()
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def threaded_gateway(**overrides: Any) -> Iterator[str]:
    """The gateway with keys on its own thread and loop (for sync clients: hypothesis, the
    browser); yields its URL."""
    overrides = {"api_keys": KEYS, "mesh_token": MESH_TOKEN} | overrides
    sock = _sock()
    port = sock.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="auth-", dir="/tmp")

    async def enqueue(queue: str, body: bytes) -> None:
        return None

    config = GatewayConfig(port=port, **overrides)
    app = create_app(config, enqueue=enqueue, database_url=f"sqlite://{tmp}/gw.db", flows=FLOWS)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "ALICE",
    "ALICE_X",
    "BOB",
    "FLOWS",
    "KEYS",
    "MESH",
    "MESH_TOKEN",
    "WRONG",
    "gateway",
    "threaded_gateway",
]
