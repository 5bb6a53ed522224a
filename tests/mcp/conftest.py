"""Fixtures for the MCP door: the official client at a chosen protocol revision, the door over an
in-process task service (shell tests), and the integrated gateway over a real mesh (end to end)."""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.client.session import ClientSession, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

from asya_gateway.flows import Flows, parse_flow
from asya_gateway.mcp import mcp_app

from .memservice import MemoryTaskService

#: The handshake revision the SDK's client initializes with, and the stateless one it discovers.
REVISIONS = ("2025-11-25", "2026-07-28")

SHELL_FLOWS = Flows(
    [
        parse_flow(
            {
                "name": "tokens",
                "description": "Stream tokens",
                "route": ["tokens"],
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "flys": {"type": "array"},
                        "delay": {"type": "number", "minimum": 0},
                        "prompt": {"type": "string"},
                    },
                },
            },
            0,
        ),
        parse_flow({"name": "bad", "route": ["bad"]}, 1),
        parse_flow({"name": "hang", "route": ["hang"], "timeout": 30}, 2),
        parse_flow({"name": "slow", "route": ["hang"], "timeout": 0.5}, 3),
        parse_flow({"name": "late", "route": ["late"], "timeout": 0.3}, 4),
        parse_flow({"name": "hidden", "route": ["tokens"], "mcp": False}, 5),
        parse_flow(
            {
                "name": "strict",
                "route": ["tokens"],
                "input_schema": {
                    "type": "object",
                    "properties": {"prompt": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["prompt"],
                    "additionalProperties": False,
                },
            },
            6,
        ),
    ]
)


@pytest.fixture(params=REVISIONS)
def revision(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def open_session(
    url: str, revision: str, message_handler: MessageHandlerFnT | None = None
) -> AsyncIterator[ClientSession]:
    """The SDK's Streamable HTTP client and ClientSession, negotiated at `revision`."""
    async with (
        streamable_http_client(f"{url}/mcp") as (read, write),
        ClientSession(read, write, message_handler=message_handler) as session,
    ):
        if revision == "2026-07-28":
            await session.discover()
        else:
            await session.initialize()
        assert session.protocol_version == revision
        yield session


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp | Callable[..., Any], sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """uvicorn serving `app` (lifespan on) in this event loop; yields its base URL."""
    sock = sock or _free_socket()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
    sock.close()


@dataclass
class Door:
    url: str
    service: MemoryTaskService


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    """The MCP door alone (its own Starlette app) over the in-process service, on a real socket."""
    svc = MemoryTaskService()
    async with svc.running(), serve(mcp_app(svc, SHELL_FLOWS).starlette()) as url:
        yield Door(url, svc)


@pytest.fixture(params=["door", "gateway"])
async def any_door(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """For what needs no task to run (listing, refusals): the door alone over the in-process
    service, and the door inside the gateway app as the integration builds it (skipped until
    `create_app` takes `flows=`). Yields the base URL."""
    if request.param == "door":
        svc = MemoryTaskService()
        async with svc.running(), serve(mcp_app(svc, SHELL_FLOWS).starlette()) as url:
            yield url
        assert svc.created == [], "a refused call must not create a task"
        return
    create_app = integrated_create_app()
    if create_app is None:
        pytest.skip("asya_gateway.app.create_app does not take flows= yet (integration)")
    from asya_gateway.config import GatewayConfig

    enqueued: list[tuple[str, bytes]] = []

    async def enqueue(queue: str, body: bytes) -> None:
        enqueued.append((queue, body))

    sock = _free_socket()
    config = GatewayConfig(port=sock.getsockname()[1])
    async with serve(create_app(config, enqueue=enqueue, flows=SHELL_FLOWS), sock) as url:
        yield url
    assert enqueued == [], "a refused call must not enqueue anything"


def integrated_create_app() -> Callable[..., Any] | None:
    """The gateway's `create_app` if it already takes `flows=` (after integration), else None."""
    try:
        from asya_gateway.app import create_app
    except ImportError:
        return None
    return create_app if "flows" in inspect.signature(create_app).parameters else None
