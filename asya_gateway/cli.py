"""`asya-gateway run`: builds `GatewayConfig` from env + options and serves the app with uvicorn.

The only module of the gateway that reads `os.environ`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from asya_mesh.transports import TransportConfig

from .app import create_app
from .config import GatewayConfig
from .tasks import TaskRegistry

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="The local Asya gateway.")


class _Server(uvicorn.Server):
    """uvicorn, but open client streams end at once on shutdown instead of holding it up."""

    registry: TaskRegistry | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.registry is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.registry.close_all)
        super().handle_exit(sig, frame)

    banner: str = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.banner:
            print(self.banner, file=sys.stderr, flush=True)


def serve(config: GatewayConfig, *, log_level: str = "warning") -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    app = create_app(config)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    server.registry = app.state.registry
    server.banner = (
        f"asya-gateway: serving on http://{config.host}:{config.port} (public URL "
        f"{config.base_url}, transport {config.transport.kind}, namespace "
        f"{config.transport.namespace})"
    )
    server.run()
    if not server.started:
        sys.exit(1)


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8089,
    public_url: Annotated[
        str | None, typer.Option(help="Base URL sidecars use to reach this gateway.")
    ] = None,
    transport: Annotated[
        str | None, typer.Option(help="sqlite | rabbitmq | sqs (env ASYA_TRANSPORT).")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Queue namespace (ASYA_NAMESPACE).")] = None,
    sqlite_path: Annotated[
        str | None, typer.Option(help="Embedded queue file (ASYA_SQLITE_PATH).")
    ] = None,
    keepalive: Annotated[
        float,
        typer.Option(help="Seconds between SSE keepalives.", envvar="ASYA_GATEWAY_KEEPALIVE"),
    ] = 15.0,
    ring_size: Annotated[
        int, typer.Option(help="Events kept per task for replay.", envvar="ASYA_GATEWAY_RING_SIZE")
    ] = 1000,
    subscriber_buffer: Annotated[
        int,
        typer.Option(help="Events queued per client.", envvar="ASYA_GATEWAY_SUBSCRIBER_BUFFER"),
    ] = 1024,
    terminal_linger: Annotated[
        float,
        typer.Option(
            help="Seconds a reported succeeded/failed waits for late FLYs before it is sent.",
            envvar="ASYA_GATEWAY_TERMINAL_LINGER",
        ),
    ] = 0.25,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the gateway: task API, event ingest, client streams and the web page."""
    try:
        tcfg = TransportConfig.from_env(
            os.environ, kind=transport, namespace=namespace, sqlite_path=sqlite_path
        )
    except ValueError as exc:
        typer.echo(f"asya-gateway: {exc}", err=True)
        raise typer.Exit(2) from None
    public = public_url or os.environ.get("ASYA_GATEWAY_PUBLIC_URL") or None
    config = GatewayConfig(
        host=host,
        port=port,
        public_url=public,
        transport=tcfg,
        keepalive_seconds=keepalive,
        ring_size=ring_size,
        subscriber_buffer=subscriber_buffer,
        terminal_linger_seconds=terminal_linger,
    )
    serve(config, log_level=log_level)


@cli.callback()
def _root() -> None:
    """The local Asya gateway."""


def main() -> None:
    cli()


__all__ = ["cli", "main", "serve"]
