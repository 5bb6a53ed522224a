"""`asya-gateway run`: builds `GatewayConfig` from env + options and serves the app with uvicorn.

The only module of the gateway that reads `os.environ`; the options are derived from
`GatewayConfig`'s declarations (`asya_runtime.settings`). Expected failures (bad
configuration, queues that cannot be reached, a port in use) are one line on stderr; the
traceback only with ASYA_LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Final

import anyio
import uvicorn

from asya_mesh.transports import TransportError
from asya_mesh.transports.config import probe_transport
from asya_runtime import __version__
from asya_runtime.gcpolicy import freeze_startup_objects
from asya_runtime.settings import ConfigError, load
from asya_runtime.settings_cli import Parser, add_arguments, given_from_args

from .app import create_app, default_database_url
from .auth import AuthConfigError, ClientAuth, MeshAuth
from .config import GatewayConfig
from .flows import Flows, FlowsError, load_flows
from .mcp import McpDoor, ToolCatalog, ToolSchemaError
from .store import StoreError, verify_store
from .tasks import TaskRegistry

PROG = "asya-gateway"


class _Server(uvicorn.Server):
    """uvicorn, but open client streams end at once on shutdown instead of holding it up."""

    registry: TaskRegistry | None = None
    mcp: McpDoor | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.registry is not None and self.loop is not None:
            if self.mcp is not None:
                self.loop.call_soon_threadsafe(self.mcp.stop)  # MCP calls ending now: not cancels
            self.loop.call_soon_threadsafe(self.registry.close_all)
        super().handle_exit(sig, frame)

    banner: str = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.banner:
            print(self.banner, file=sys.stderr, flush=True)


class _NoCredentials(logging.Filter):
    """At debug level the WebSocket library logs each header of an upgrade (the sidecars' event
    stream carries the mesh token): credentials are masked before any handler sees them."""

    _HEADERS: Final = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and record.msg in ("< %s: %s", "> %s: %s")
            and str(args[0]).lower() in self._HEADERS
        ):
            record.args = (args[0], "[redacted]")
        return True


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def start_warnings(config: GatewayConfig, clients: ClientAuth) -> list[str]:
    """The start-up warnings (gateway.md "Who may do what"); they never name a secret."""
    out = []
    if not clients.enabled and not _loopback(config.host):
        out.append(
            f"listening on {config.host} (beyond loopback) with no client credentials: anyone "
            "who reaches the port can create, read and cancel tasks (set ASYA_GATEWAY_API_KEYS "
            "or ASYA_GATEWAY_JWT_KEY)"
        )
    if clients.enabled and not MeshAuth(config.mesh_token).enabled:  # "," is none, too
        out.append(
            "client credentials are set but ASYA_GATEWAY_MESH_TOKEN is not: anyone who reaches "
            "the event endpoints can forge task events"
        )
    return out


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(
    config: GatewayConfig, *, log_level: str | None = None, flows: Flows | None = None
) -> None:
    """Run the gateway until SIGINT/SIGTERM (and the mesh listener, with `mesh_port`)."""
    app = create_app(config, flows=flows)
    sockets: list[socket.socket] | None = None
    mesh_note = ""
    if config.mesh_port is not None:
        try:
            sockets = [_bind(config.host, config.port), _bind(config.host, config.mesh_port)]
        except OSError as exc:
            print(f"{PROG}: cannot listen on {config.host}: {exc.strerror}", file=sys.stderr)
            sys.exit(1)
        bound = sockets[1].getsockname()[1]
        app.state.listeners.mesh_port = bound
        mesh_note = f"; sidecar endpoints on port {bound} only, mesh URL {config.mesh_url}"
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=log_level or config.log_level,
            access_log=False,
            http="httptools",  # a declared dependency: say so rather than depend on "auto"
            ws="websockets-sansio",  # the sidecars' event stream (eventstream.py); declared too
            ws_max_size=config.max_body_bytes,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn's WebSocket protocol logs to "uvicorn.error" (configured by `uvicorn.Config`).
    logging.getLogger("uvicorn.error").addFilter(_NoCredentials())
    server.registry = app.state.registry
    freeze_startup_objects()  # the app and every library are built: out of the GC's walks
    server.mcp = app.state.mcp
    server.banner = (
        f"{PROG}: serving on http://{config.host}:{config.port} (public URL "
        f"{config.base_url}, transport {config.transport.kind}, namespace "
        f"{config.transport.namespace}{mesh_note})"
    )
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="The local Asya gateway.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve the task API, event ingest, client streams and the web page",
        description="Serve the gateway: task API, event ingest, client streams and the web "
        "page. Every option can also be set by the variable named in its help; the option wins.",
    )
    add_arguments(run, GatewayConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = load(GatewayConfig, os.environ, given_from_args(args, GatewayConfig))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    debug = config.log_level in ("debug", "trace")  # checked by its declaration; the flag wins
    try:
        flows = load_flows(config.flows_file) if config.flows_file else Flows()
        ToolCatalog.build(flows)  # every MCP flow's input_schema is a usable JSON Schema
        anyio.run(verify_store, config.database_url or default_database_url(config))
        clients = ClientAuth.from_config(
            config.api_keys, config.jwt_key, audience=config.jwt_audience, issuer=config.jwt_issuer
        )
    except (FlowsError, ToolSchemaError, StoreError, AuthConfigError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    for warning in start_warnings(config, clients):
        print(f"{PROG}: warning: {warning}", file=sys.stderr, flush=True)
    try:
        if not debug:  # the broker clients' own lines would repeat ours
            for name in ("aio_pika", "aiormq", "botocore", "aiobotocore"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        anyio.run(probe_transport, config.transport)
    except (TransportError, OSError) as exc:
        if debug:
            traceback.print_exception(exc)
        print(f"{PROG}: cannot use {config.transport.address}: {exc}", file=sys.stderr)
        return 1
    serve(config, flows=flows)
    return 0


__all__ = ["main", "serve", "start_warnings"]
