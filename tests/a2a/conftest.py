"""A2A fixtures: the door served over real HTTP (uvicorn) and the official SDK's client.

`door` serves the A2A routes over `MemService` (tests/a2a/memservice.py): the shell-level tests
drive that service as the mesh would. The end-to-end tests (test_e2e.py) use `asya dev`, i.e.
the integrated gateway, and skip while its app does not mount the A2A door yet.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as pb
from starlette.applications import Starlette

from asya_gateway.a2a import DoorConfig, a2a_routes
from asya_gateway.flows import Flow, Flows

from .memservice import MemService

FLOWS = Flows(
    [
        Flow(name="chat", route=["tokens"], description="streams tokens", tags=["llm"]),
        Flow(name="other", route=["x"], description="another flow"),
        Flow(name="hidden", route=["y"], a2a=False),
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(service: Any, flows: Flows, public_url: str, config: DoorConfig) -> Starlette:
    """The app as the integrator mounts it: the door's routes at the gateway root."""
    return Starlette(routes=a2a_routes(service, flows, public_url, config))


class Door:
    def __init__(self, url: str, service: MemService) -> None:
        self.url = url
        self.service = service

    async def client(self, *, streaming: bool = True, read_timeout: float | None = None) -> Client:
        """The official client, from the card at the root (its default 5 s read timeout)."""
        http = httpx.AsyncClient(timeout=read_timeout) if read_timeout is not None else None
        factory = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http))
        return await factory.create_from_url(self.url)

    async def client_v03(self) -> Client:
        """The official client made to speak v0.3 (the card's 0.3 interface only)."""
        client = await self.client()
        card = pb.AgentCard()
        card.CopyFrom(client._card)  # type: ignore[attr-defined]
        await client.close()
        keep = [i for i in card.supported_interfaces if i.protocol_version.startswith("0.3")]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(keep)
        return ClientFactory(ClientConfig(streaming=True)).create(card)


@asynccontextmanager
async def serve(
    service: MemService, flows: Flows = FLOWS, config: DoorConfig | None = None
) -> AsyncIterator[Door]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = build_app(service, flows, url, config or DoorConfig(keepalive_seconds=0.5))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110  # uvicorn offers no event to wait on
                await anyio.sleep(0.01)
        try:
            yield Door(url, service)
        finally:
            server.should_exit = True


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    async with serve(MemService()) as d:
        yield d


@pytest.fixture
def threaded_door() -> Iterator[str]:
    """The door on its own thread and loop (for sync clients such as the hypothesis fuzzer)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = DoorConfig(keepalive_seconds=0.5, blocking_wait_seconds=0.05)
    app = build_app(MemService(), FLOWS, url, config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "door did not start"
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
