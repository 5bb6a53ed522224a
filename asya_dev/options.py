"""`asya dev`'s options: declared once in `DevSettings` (variable, default, help), turned into
the `DevOptions` the mesh plan takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import msgspec

from asya_mesh.transports import KINDS
from asya_runtime.settings import one_of, opt

DEFAULT_HANDLERS: Final = {
    "stages": "examples.handlers.stages:pipeline",
    "tokens": "examples.handlers.tokens:stream",
    "progress": "examples.handlers.progress:batch",
}
END_ACTORS: Final = ("x-sink", "x-sump")
SOCKET_NAME: Final = "asya-runtime.sock"


class DevSettings(msgspec.Struct, kw_only=True, frozen=True):
    """`asya dev`'s options, each declared once (variable, default, help)."""

    prompt: Annotated[
        str | None,
        opt(
            "ASYA_DEV_PROMPT",
            "send this prompt, stream the answer, then stop",
            metavar="TEXT",
            default_text="unset (serve the web page)",
        ),
    ] = None
    route: Annotated[
        list[str], opt("ASYA_DEV_ROUTE", "the actors, comma-separated", metavar="A,B,...")
    ] = msgspec.field(default_factory=lambda: ["stages", "tokens", "progress"])
    actor: Annotated[
        list[str],
        opt(
            "ASYA_DEV_ACTORS",
            "an actor's handler as NAME=module:attr; repeatable",
            metavar="NAME=SPEC",
        ),
    ] = msgspec.field(default_factory=list)
    port: Annotated[int, opt("ASYA_DEV_PORT", "the gateway's port", ge=1, le=65535)] = 8089
    workdir: Annotated[
        str,
        opt(
            "ASYA_DEV_DIR",
            "sockets and the queue file (wiped at start)",
            flag="--dir",
            metavar="DIR",
        ),
    ] = ".asya-dev"
    verbose: Annotated[bool, opt("ASYA_DEV_VERBOSE", "show every process's log lines")] = False
    ready_timeout: Annotated[
        float,
        opt("ASYA_DEV_READY_TIMEOUT", "how long to wait for the mesh", duration=True, gt=0),
    ] = 60.0
    timeout: Annotated[
        float,
        opt("ASYA_DEV_TIMEOUT", "how long to wait for the task", duration=True, gt=0),
    ] = 300.0
    flows: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_FLOWS",
            "more flows for the gateway (JSON or .toml); the route is always flow `dev`",
            metavar="FILE",
        ),
    ] = None
    gateways: Annotated[
        int,
        opt(
            "ASYA_DEV_GATEWAYS",
            "gateway replicas on ports PORT, PORT+1, ... (2 or more need --database-url)",
            ge=1,
            le=8,
        ),
    ] = 1
    database_url: Annotated[
        str | None,
        opt(
            "ASYA_GATEWAY_DATABASE_URL",
            "the gateways' task store (postgresql://... to share it between replicas)",
            metavar="URL",
            default_text="sqlite in --dir",
        ),
    ] = None
    mesh_port: Annotated[
        int | None,
        opt(
            "ASYA_DEV_MESH_PORT",
            "serve the sidecar endpoints on their own listener: ports MESH_PORT, MESH_PORT+1, ..."
            " (one per replica); sidecars report there",
            metavar="PORT",
            check=_port,
        ),
    ] = None
    transport: Annotated[
        str,
        opt(
            "ASYA_TRANSPORT",
            "sqlite (embedded), rabbitmq or sqs; broker settings from the usual ASYA_* variables",
            check=one_of(*KINDS),
        ),
    ] = "sqlite"


def _port(raw: object) -> int:
    port = int(str(raw))
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (1..65535)")
    return port


@dataclass(frozen=True)
class DevOptions:
    route: list[str]
    handlers: dict[str, str]
    port: int
    workdir: Path
    prompt: str | None = None
    verbose: bool = False
    ready_timeout: float = 60.0
    task_timeout: float = 300.0
    namespace: str = "dev"
    transport: str = "sqlite"  # ASYA_RABBITMQ_URL / ASYA_SQS_* etc. come from the environment
    flows_file: str | None = None
    gateways: int = 1
    database_url: str | None = None
    mesh_port: int | None = None  # the first replica's mesh listener (None: no separate one)


def parse_actor_overrides(items: list[str]) -> dict[str, str]:
    """`name=module:attr` items into a mapping; raises `ValueError` naming a bad item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ValueError(f"--actor {item!r}: expected name=module:attr")
        out[name.strip()] = spec.strip()
    return out


def options_from(settings: DevSettings) -> DevOptions:
    """The mesh's options from the command line's; raises `ValueError` naming the flag."""
    handlers = {**DEFAULT_HANDLERS, **parse_actor_overrides(settings.actor)}
    opts = DevOptions(
        route=[a.strip() for a in settings.route if a.strip()],
        handlers=handlers,
        port=settings.port,
        workdir=Path(settings.workdir),
        prompt=settings.prompt,
        verbose=settings.verbose,
        ready_timeout=settings.ready_timeout,
        task_timeout=settings.timeout,
        transport=settings.transport,
        flows_file=settings.flows,
        gateways=settings.gateways,
        database_url=settings.database_url,
        mesh_port=settings.mesh_port,
    )
    if not opts.route:
        raise ValueError("--route names no actor")
    if opts.gateways > 1 and not (opts.database_url or "").startswith(
        ("postgresql://", "postgres://")
    ):
        raise ValueError(
            f"--gateways {opts.gateways}: replicas share their tasks through PostgreSQL; "
            "add --database-url postgresql://..."
        )
    return opts


__all__ = [
    "DEFAULT_HANDLERS",
    "END_ACTORS",
    "SOCKET_NAME",
    "DevOptions",
    "DevSettings",
    "options_from",
    "parse_actor_overrides",
]
