"""The gateway's ASGI app (gateway.md): the store, the bus, the engine and the doors assembled.

`create_app` opens the task store and the queues for the app's lifetime and mounts the doors:
the REST routes (`rest.Gateway`), the sidecars' event stream, A2A (`a2a/`) and MCP (`mcp/`),
all behind the guard (`guard.Guard`). Queues are reached through an injected `Enqueue`
callable, or the transport `config.transport` names.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from asya_mesh.transports import open_transport

from .a2a import a2a_routes
from .auth import ClientAuth, MeshAuth
from .bus import PgBus
from .config import GatewayConfig
from .engine import Enqueue, TaskEngine
from .flows import Flows, load_flows
from .guard import Guard, Listeners
from .mcp import mcp_app
from .rest import Gateway, HTTPError, http_error, service_error
from .service import ServiceError
from .store import open_store
from .tasks import TaskRegistry


def default_database_url(config: GatewayConfig) -> str:
    """`asya-gateway.db` beside the embedded queue's database."""
    directory = os.path.dirname(os.path.abspath(config.transport.sqlite_path))
    return "sqlite://" + os.path.join(directory, "asya-gateway.db")


def create_app(
    config: GatewayConfig,
    *,
    enqueue: Enqueue | None = None,
    database_url: str | None = None,
    flows: Flows | None = None,
    fly_hold_seconds: float | None = None,
    terminal_wait_seconds: float | None = None,
) -> Starlette:
    """The gateway ASGI app. It opens the task store (`database_url`, else the config's, else
    SQLite beside the embedded queue) and, without `enqueue`, `config.transport`, for its
    lifetime. `flows` default: the config's flows file (validated by the CLI at start)."""
    url = database_url or config.database_url or default_database_url(config)
    if flows is None:
        flows = load_flows(config.flows_file) if config.flows_file else Flows()
    if fly_hold_seconds is None:
        fly_hold_seconds = config.fly_hold_seconds
    if terminal_wait_seconds is None:
        terminal_wait_seconds = config.terminal_wait_seconds
    store = open_store(url)
    bus = PgBus(url) if url.startswith(("postgresql://", "postgres://")) else None
    registry = TaskRegistry(
        bus_ids=bus is not None,
        ring_size=config.ring_size,
        ring_max_bytes=config.ring_max_bytes,
        subscriber_buffer=config.subscriber_buffer,
        max_tasks=config.max_tasks,
        fly_hold_seconds=fly_hold_seconds,
        terminal_wait_seconds=terminal_wait_seconds,
    )

    async def not_ready(queue: str, body: bytes) -> None:
        raise RuntimeError("transport not open")

    engine = TaskEngine(
        store,
        registry,
        enqueue or not_ready,
        base_url=config.base_url,
        namespace=config.transport.namespace,
        flows=flows,
        bus=bus,
        mesh_url=config.mesh_url,
    )
    gw = Gateway(config, engine)
    # Raises AuthConfigError (one line, no secret) for keys or a JWT key that cannot be used.
    clients = ClientAuth.from_config(
        config.api_keys, config.jwt_key, audience=config.jwt_audience, issuer=config.jwt_issuer
    )
    mesh_auth = MeshAuth(config.mesh_token)
    listeners = Listeners(config.mesh_port)
    mcp = mcp_app(engine, flows)  # raises ToolSchemaError (one line) for a bad input_schema

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(engine.run)
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        if enqueue is None:
                            transport = await open_transport(config.transport)
                            stack.push_async_callback(transport.aclose)
                            # A create's first actor must have a queue (declared by its
                            # sidecar); a send never declares one (gateway.md).
                            engine.enqueue = functools.partial(transport.send, must_exist=True)
                        # Innermost: MCP calls end before the engine and the queues close.
                        await stack.enter_async_context(mcp.lifespan())
                        yield
                finally:
                    engine.close()
                    tg.cancel_scope.cancel()
        finally:
            if bus is not None:
                await bus.aclose()
            await store.aclose()

    routes = [
        Route("/", gw.index, methods=["GET"]),
        Route("/health", gw.health, methods=["GET"]),
        Route("/api/v1/stats", gw.stats, methods=["GET"]),
        Route("/api/v1/flows", gw.flows, methods=["GET"]),
        Route("/api/v1/mesh", gw.create, methods=["POST"]),
        Route("/api/v1/mesh/", gw.create, methods=["POST"]),
        Route("/api/v1/mesh/feed", gw.feed, methods=["GET"]),
        Route("/api/v1/mesh/events", gw.events_many, methods=["POST"]),
        WebSocketRoute("/api/v1/mesh/events", gw.event_stream),
        Route("/api/v1/mesh/{id}", gw.get, methods=["GET"]),
        Route("/api/v1/mesh/{id}", gw.cancel, methods=["DELETE"]),
        Route("/api/v1/mesh/{id}/resume", gw.resume, methods=["POST"]),
        Route("/api/v1/mesh/{id}/events", gw.events, methods=["POST"]),
        Route("/api/v1/mesh/{id}/events", gw.stream, methods=["GET"]),  # mesh-api's SSE path
        Route("/mesh/{id}/fly", gw.legacy_fly, methods=["POST"]),
        Route("/mesh/{id}/progress", gw.legacy_progress, methods=["POST"]),
        Route("/mesh/{id}/final", gw.legacy_final, methods=["POST"]),
        Route("/stream/{id}", gw.stream, methods=["GET"]),
        Route("/mesh/{id}/stream", gw.stream, methods=["GET"]),  # legacy gateway's SSE path
        *mcp.routes(),
        *a2a_routes(engine, flows, config.base_url, schemes=clients.schemes),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPError: http_error, ServiceError: service_error},
    )
    # Outermost: nothing runs for a request the guard refuses.
    app.add_middleware(Guard, clients=clients, mesh=mesh_auth, listeners=listeners)
    app.state.listeners = listeners
    app.state.auth = (clients, mesh_auth)
    app.state.registry = registry
    app.state.engine = engine
    app.state.gateway = gw
    app.state.mcp = mcp
    return app


__all__ = ["create_app", "default_database_url"]
