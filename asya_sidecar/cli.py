"""`asya-sidecar`: `run` (the sidecar) and `queue send|receive|ls` (the queue tools).

The only module that reads `os.environ`. The `run` options are derived from `SidecarConfig`'s
declarations and the queue tools' from `TransportConfig`'s (`asya_runtime.settings`); a flag
wins over its variable. Expected failures (bad configuration, a broker that cannot be reached,
the runtime missing) are one line on stderr; the traceback only with ASYA_LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from asya_mesh.transports import TransportConfig, TransportError, open_transport, queue_name
from asya_mesh.transports.config import probe_transport
from asya_runtime import __version__
from asya_runtime.gcpolicy import freeze_startup_objects
from asya_runtime.settings import ConfigError, load_one
from asya_runtime.settings_cli import Parser, add_arguments, given_from_args
from asya_runtime.wire import Envelope, Route

from .config import SidecarConfig
from .logging import configure_logging, quiet_broker_clients

__all__ = ["main"]

PROG = "asya-sidecar"


class _Fail(Exception):
    """An expected failure: one line, an exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="The asya-mesh sidecar and its queue tools.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve one actor's queue beside its runtime (or an end queue with --end)",
        description="Serve one actor's queue beside its runtime (or an end queue with --end). "
        "Every option can also be set by the variable named in its help; the option wins.",
    )
    add_arguments(run, SidecarConfig)

    queue = sub.add_parser("queue", help="put envelopes on queues, read them, list depths")
    qsub = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    send = qsub.add_parser("send", help="put an envelope on ACTOR's queue; prints its id")
    send.add_argument("actor", help="the first actor (its queue gets the envelope)")
    send.add_argument("payload", nargs="?", help="payload JSON [default null]")
    send.add_argument(
        "--next",
        action="append",
        default=[],
        metavar="ACTOR",
        help="a later actor, in order; repeatable [default none]",
    )
    send.add_argument(
        "--envelope",
        metavar="JSON",
        help="a full envelope JSON instead of a payload [default unset]",
    )
    send.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an envelope header; repeatable [default none]",
    )
    send.add_argument("--id", metavar="ID", help="envelope id [default a fresh UUID]")
    recv = qsub.add_parser("receive", help="print envelopes from a queue as JSON lines")
    recv.add_argument("actor", help="queue to read: an actor, x-sink or x-sump")
    recv.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="stop after this many envelopes, 0 = no limit [default 1]",
    )
    recv.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds to wait for each envelope [default 5]",
    )
    recv.add_argument(
        "--ack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="remove what is read [default true]",
    )
    qsub.add_parser("ls", help="each known queue with its depth (ready + leased + delayed)")
    for tool in (send, recv, qsub.choices["ls"]):
        add_arguments(tool, TransportConfig)
    return p


def _log_level(args: argparse.Namespace) -> str:
    """`--log-level` / ASYA_LOG_LEVEL as `SidecarConfig` declares it (the queue tools too, which
    have no flag for it); a bad value is one line naming the variable and the allowed levels."""
    given = given_from_args(args, SidecarConfig) if args.command == "run" else {}
    try:
        level: str = load_one(SidecarConfig, "log_level", os.environ, given)
    except ConfigError as exc:
        raise _Fail(str(exc)) from None
    return level


def _transport_failure(exc: BaseException, cfg: TransportConfig) -> str:
    return f"cannot use {cfg.address}: {exc}"


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = SidecarConfig.from_env(os.environ, **given_from_args(args, SidecarConfig))
    except ValueError as exc:
        raise _Fail(str(exc)) from None
    configure_logging(cfg.log_level, cfg.log_format)

    from .runtime_client import RuntimeUnavailable
    from .worker import RuntimeHung

    async def main() -> None:
        from .runner import run_sidecar

        await probe_transport(cfg.transport)  # unreachable queues: one line, before anything
        t = await open_transport(cfg.transport, concurrency=cfg.concurrency)
        freeze_startup_objects()  # every library is imported by now: out of the GC's walks
        try:
            await run_sidecar(cfg, t)
        finally:
            with anyio.CancelScope(shield=True):
                await t.aclose()

    try:
        anyio.run(main)
    except* RuntimeHung as eg:
        raise _Fail(f"fatal: {_leaf(eg)}", 3) from eg
    except* RuntimeUnavailable as eg:
        raise _Fail(f"fatal: {_leaf(eg)}", 4) from eg
    except* (TransportError, OSError) as eg:
        raise _Fail(_transport_failure(_leaf(eg), cfg.transport), 1) from eg
    return 0


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# -- queue tools --------------------------------------------------------------------------------


def _transport_config(args: argparse.Namespace) -> TransportConfig:
    try:
        return TransportConfig.from_env(os.environ, **given_from_args(args, TransportConfig))
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _with_transport(cfg: TransportConfig, level: str, fn: Any) -> Any:
    quiet_broker_clients(level)

    async def main() -> Any:
        t = await open_transport(cfg)
        try:
            return await fn(t)
        finally:
            with anyio.CancelScope(shield=True):
                await t.aclose()

    try:
        return anyio.run(main)
    except* (TransportError, OSError) as eg:
        raise _Fail(_transport_failure(_leaf(eg), cfg), 1) from eg


def _envelope(args: argparse.Namespace) -> Envelope:
    if args.envelope is not None:
        try:
            env = msgspec.json.decode(args.envelope.encode(), type=Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _Fail(f"--envelope: {exc}") from None
        return env if env.id else msgspec.structs.replace(env, id=str(uuid.uuid4()))
    try:
        data = msgspec.json.decode((args.payload or "null").encode())
    except msgspec.DecodeError as exc:
        raise _Fail(f"payload is not JSON: {exc}") from None
    headers: dict[str, Any] = {}
    for h in args.header:
        k, sep, v = h.partition("=")
        if not sep:
            raise _Fail(f"--header {h!r}: expected KEY=VALUE")
        headers[k] = v
    return Envelope(
        id=args.id or str(uuid.uuid4()),
        route=Route(prev=[], curr=args.actor, next=list(args.next)),
        headers=headers,
        payload=data,
    )


def _queue_send(args: argparse.Namespace) -> int:
    env = _envelope(args)
    cfg = _transport_config(args)

    async def send(t: Any) -> None:
        await t.send(queue_name(cfg.namespace, args.actor), msgspec.json.encode(env))

    _with_transport(cfg, _log_level(args), send)
    print(env.id)
    return 0


def _queue_receive(args: argparse.Namespace) -> int:
    cfg = _transport_config(args)

    async def receive(t: Any) -> int:
        got = 0
        while args.count == 0 or got < args.count:
            d = await t.receive(queue_name(cfg.namespace, args.actor), wait=args.wait)
            if d is None:
                break
            sys.stdout.write(d.body.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
            await (d.ack() if args.ack else d.requeue(0.0))
            got += 1
        return got

    return 0 if _with_transport(cfg, _log_level(args), receive) else 1


def _queue_ls(args: argparse.Namespace) -> int:
    cfg = _transport_config(args)

    async def depths(t: Any) -> dict[str, int]:
        out: dict[str, int] = await t.depths()
        return out

    found: dict[str, int] = _with_transport(cfg, _log_level(args), depths)
    width = max((len(q) for q in found), default=5)
    print(f"{'QUEUE':<{width}}  DEPTH")
    for q, n in sorted(found.items()):
        print(f"{q:<{width}}  {n}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: the exit status."""
    args = _parser().parse_args(argv)
    debug = False
    try:
        debug = _log_level(args).upper() == "DEBUG"
        if args.command == "run":
            return _run(args)
        return {"send": _queue_send, "receive": _queue_receive, "ls": _queue_ls}[
            args.queue_command
        ](args)
    except _Fail as exc:
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
