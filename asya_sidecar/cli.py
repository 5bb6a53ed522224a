"""`asya-sidecar`: `run` (the sidecar) and `queue send|receive|ls` (the queue tools).

The only module that reads `os.environ`: it builds `SidecarConfig` / `TransportConfig` from the
`ASYA_*` variables, with each `run` option overriding its variable.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Annotated, Any

import anyio
import msgspec
import typer

from asya_mesh.transports import TransportConfig, open_transport, queue_name
from asya_runtime.wire import Envelope, Route

from .config import SidecarConfig
from .logging import configure_logging

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The asya-mesh sidecar and its queue tools."
)
queue_app = typer.Typer(
    no_args_is_help=True, help="Put envelopes on queues, read them, list depths."
)
app.add_typer(queue_app, name="queue")

Opt = typer.Option


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def run(
    actor_name: Annotated[str | None, Opt("--actor-name", help="ASYA_ACTOR_NAME")] = None,
    namespace: Annotated[str | None, Opt(help="ASYA_NAMESPACE (default 'default')")] = None,
    transport: Annotated[str | None, Opt(help="ASYA_TRANSPORT: sqlite|rabbitmq|sqs")] = None,
    sqlite_path: Annotated[str | None, Opt(help="ASYA_SQLITE_PATH")] = None,
    rabbitmq_url: Annotated[str | None, Opt(help="ASYA_RABBITMQ_URL")] = None,
    rabbitmq_exchange: Annotated[str | None, Opt(help="ASYA_RABBITMQ_EXCHANGE")] = None,
    rabbitmq_prefetch: Annotated[int | None, Opt(help="ASYA_RABBITMQ_PREFETCH")] = None,
    sqs_endpoint: Annotated[str | None, Opt(help="ASYA_SQS_ENDPOINT")] = None,
    aws_region: Annotated[str | None, Opt(help="ASYA_AWS_REGION")] = None,
    sqs_visibility_timeout: Annotated[str | None, Opt(help="ASYA_SQS_VISIBILITY_TIMEOUT")] = None,
    sqs_wait_time_seconds: Annotated[int | None, Opt(help="ASYA_SQS_WAIT_TIME_SECONDS")] = None,
    socket_dir: Annotated[str | None, Opt(help="ASYA_SOCKET_DIR")] = None,
    socket_name: Annotated[str | None, Opt(help="ASYA_SOCKET_NAME")] = None,
    runtime_ready_timeout: Annotated[str | None, Opt(help="ASYA_RUNTIME_READY_TIMEOUT")] = None,
    concurrency: Annotated[int | None, Opt(help="ASYA_CONCURRENCY")] = None,
    actor_timeout: Annotated[str | None, Opt(help="ASYA_RESILIENCY_ACTOR_TIMEOUT")] = None,
    resiliency_policies: Annotated[str | None, Opt(help="ASYA_RESILIENCY_POLICIES")] = None,
    resiliency_rules: Annotated[str | None, Opt(help="ASYA_RESILIENCY_RULES")] = None,
    actor_sink: Annotated[str | None, Opt(help="ASYA_ACTOR_SINK")] = None,
    actor_sump: Annotated[str | None, Opt(help="ASYA_ACTOR_SUMP")] = None,
    gateway_url: Annotated[str | None, Opt(help="ASYA_GATEWAY_URL")] = None,
    end: Annotated[bool | None, Opt("--end/--no-end", help="ASYA_IS_END_ACTOR")] = None,
    metrics_addr: Annotated[str | None, Opt(help="ASYA_METRICS_ADDR ('' disables)")] = None,
    log_level: Annotated[str | None, Opt(help="ASYA_LOG_LEVEL")] = None,
    log_format: Annotated[str | None, Opt(help="ASYA_LOG_FORMAT: console|json")] = None,
    shutdown_grace: Annotated[str | None, Opt(help="ASYA_SHUTDOWN_GRACE")] = None,
    cancel_grace: Annotated[str | None, Opt(help="ASYA_CANCEL_GRACE")] = None,
    fly_buffer: Annotated[int | None, Opt(help="ASYA_FLY_BUFFER")] = None,
    preflight_timeout: Annotated[str | None, Opt(help="ASYA_GATEWAY_PREFLIGHT_TIMEOUT")] = None,
    fly_flush_timeout: Annotated[str | None, Opt(help="ASYA_FLY_FLUSH_TIMEOUT")] = None,
) -> None:
    """Serve one actor's queue beside its runtime (or an end queue with --end)."""
    overrides: dict[str, Any] = {
        "ASYA_ACTOR_NAME": actor_name,
        "ASYA_NAMESPACE": namespace,
        "ASYA_TRANSPORT": transport,
        "ASYA_SQLITE_PATH": sqlite_path,
        "ASYA_RABBITMQ_URL": rabbitmq_url,
        "ASYA_RABBITMQ_EXCHANGE": rabbitmq_exchange,
        "ASYA_RABBITMQ_PREFETCH": rabbitmq_prefetch,
        "ASYA_SQS_ENDPOINT": sqs_endpoint,
        "ASYA_AWS_REGION": aws_region,
        "ASYA_SQS_VISIBILITY_TIMEOUT": sqs_visibility_timeout,
        "ASYA_SQS_WAIT_TIME_SECONDS": sqs_wait_time_seconds,
        "ASYA_SOCKET_DIR": socket_dir,
        "ASYA_SOCKET_NAME": socket_name,
        "ASYA_RUNTIME_READY_TIMEOUT": runtime_ready_timeout,
        "ASYA_CONCURRENCY": concurrency,
        "ASYA_RESILIENCY_ACTOR_TIMEOUT": actor_timeout,
        "ASYA_RESILIENCY_POLICIES": resiliency_policies,
        "ASYA_RESILIENCY_RULES": resiliency_rules,
        "ASYA_ACTOR_SINK": actor_sink,
        "ASYA_ACTOR_SUMP": actor_sump,
        "ASYA_GATEWAY_URL": gateway_url,
        "ASYA_IS_END_ACTOR": end,
        "ASYA_METRICS_ADDR": metrics_addr,
        "ASYA_LOG_LEVEL": log_level,
        "ASYA_LOG_FORMAT": log_format,
        "ASYA_SHUTDOWN_GRACE": shutdown_grace,
        "ASYA_CANCEL_GRACE": cancel_grace,
        "ASYA_FLY_BUFFER": fly_buffer,
        "ASYA_GATEWAY_PREFLIGHT_TIMEOUT": preflight_timeout,
        "ASYA_FLY_FLUSH_TIMEOUT": fly_flush_timeout,
    }
    try:
        cfg = SidecarConfig.from_env(os.environ, **overrides)
    except ValueError as exc:
        _fail(str(exc))
        return
    configure_logging(cfg.log_level, cfg.log_format)

    async def main() -> None:
        from .app import run_sidecar

        t = await open_transport(cfg.transport)
        try:
            await run_sidecar(cfg, t)
        finally:
            with anyio.CancelScope(shield=True):
                await t.aclose()

    from .runtime_client import RuntimeUnavailable
    from .worker import RuntimeHung

    try:
        anyio.run(main)
    except* RuntimeHung as eg:
        typer.echo(f"fatal: {_leaf(eg)}", err=True)
        raise typer.Exit(3) from None
    except* RuntimeUnavailable as eg:
        typer.echo(f"fatal: {_leaf(eg)}", err=True)
        raise typer.Exit(4) from None


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# -- queue tools --------------------------------------------------------------------------------


def _transport_config() -> TransportConfig:
    try:
        return TransportConfig.from_env(os.environ)
    except ValueError as exc:
        _fail(str(exc))
        raise


@queue_app.command("send")
def queue_send(
    actor: Annotated[str, typer.Argument(help="the first actor (its queue gets the envelope)")],
    payload: Annotated[str | None, typer.Argument(help="payload JSON")] = None,
    next_: Annotated[list[str] | None, Opt("--next", help="later actors, in order")] = None,
    envelope: Annotated[str | None, Opt(help="a full envelope JSON instead of a payload")] = None,
    header: Annotated[list[str] | None, Opt("--header", help="KEY=VALUE header")] = None,
    id_: Annotated[str | None, Opt("--id", help="envelope id (default: a fresh UUID)")] = None,
) -> None:
    """Put an envelope on ACTOR's queue; prints its id."""
    if envelope is not None:
        try:
            env = msgspec.json.decode(envelope.encode(), type=Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _fail(f"--envelope: {exc}")
            return
        if not env.id:
            env = msgspec.structs.replace(env, id=str(uuid.uuid4()))
    else:
        try:
            data = msgspec.json.decode((payload or "null").encode())
        except msgspec.DecodeError as exc:
            _fail(f"payload is not JSON: {exc}")
            return
        headers: dict[str, Any] = {}
        for h in header or []:
            k, sep, v = h.partition("=")
            if not sep:
                _fail(f"--header {h!r}: expected KEY=VALUE")
            headers[k] = v
        env = Envelope(
            id=id_ or str(uuid.uuid4()),
            route=Route(prev=[], curr=actor, next=list(next_ or [])),
            headers=headers,
            payload=data,
        )
    cfg = _transport_config()

    async def main() -> None:
        t = await open_transport(cfg)
        try:
            await t.send(queue_name(cfg.namespace, actor), msgspec.json.encode(env))
        finally:
            await t.aclose()

    anyio.run(main)
    typer.echo(env.id)


@queue_app.command("receive")
def queue_receive(
    actor: Annotated[str, typer.Argument(help="queue to read: an actor, x-sink or x-sump")],
    count: Annotated[int, Opt(help="stop after this many envelopes (0 = no limit)")] = 1,
    wait: Annotated[float, Opt(help="seconds to wait for each envelope")] = 5.0,
    ack: Annotated[bool, Opt("--ack/--no-ack", help="remove what is read (default)")] = True,
) -> None:
    """Print envelopes from a queue as JSON lines; exit 1 if none arrived."""
    cfg = _transport_config()
    got = 0

    async def main() -> None:
        nonlocal got
        t = await open_transport(cfg)
        try:
            while count == 0 or got < count:
                d = await t.receive(queue_name(cfg.namespace, actor), wait=wait)
                if d is None:
                    break
                sys.stdout.write(d.body.decode("utf-8", "replace") + "\n")
                sys.stdout.flush()
                await (d.ack() if ack else d.requeue(0.0))
                got += 1
        finally:
            await t.aclose()

    anyio.run(main)
    if got == 0:
        raise typer.Exit(1)


@queue_app.command("ls")
def queue_ls() -> None:
    """Each known queue with its depth (ready + leased + delayed)."""
    cfg = _transport_config()

    async def main() -> dict[str, int]:
        t = await open_transport(cfg)
        try:
            return await t.depths()
        finally:
            await t.aclose()

    depths = anyio.run(main)
    width = max((len(q) for q in depths), default=5)
    typer.echo(f"{'QUEUE':<{width}}  DEPTH")
    for q, n in sorted(depths.items()):
        typer.echo(f"{q:<{width}}  {n}")


def main() -> None:
    """Console-script entry point."""
    app()
