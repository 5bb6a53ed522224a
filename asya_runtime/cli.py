"""`asya-runtime`: the command line (argparse: the runtime stays light).

    asya-runtime run [SPEC] [--socket PATH] [--concurrency N] ...   (see `run --help`)
    asya-runtime invoke [--socket PATH] [--route a,b] [--envelope] [--timeout S] JSON

The only module that reads the environment: `RuntimeConfig` declares every option once (its
variable, default and help) and `asya_runtime.settings` derives the flags from it; a flag wins
over its variable. A bad value exits 2 with one line naming the variable or flag.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import anyio
import msgspec
from anyio.abc import TaskStatus

from . import __version__
from .driver import sync_calls_running
from .errors import HandlerLoadError
from .gcpolicy import freeze_startup_objects
from .loader import LoadedHandler, ensure_cwd_importable, load_handler
from .server import DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE, ServerConfig, serve
from .settings import ConfigError, load, opt
from .settings_cli import Parser, add_arguments, given_from_args
from .wire import DEFAULT_MAX_FRAME_BYTES, End, Error

__all__ = ["RuntimeConfig", "main", "socket_path_from_env"]

log = logging.getLogger("asya_runtime")
PROG = "asya-runtime"


def _octal(raw: str) -> str:
    if raw.strip():
        try:
            mode = int(raw.strip(), 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o7777:
            raise ValueError(
                f"invalid octal mode {raw!r} (e.g. 0o666, 600, or empty to leave as is)"
            )
    return raw


def _log_level(raw: str) -> str:
    level = raw.upper()
    return level if level in logging.getLevelNamesMapping() else "INFO"


class RuntimeConfig(msgspec.Struct, kw_only=True, frozen=True):
    """What `asya-runtime run` reads; each option declared once (variable, default, help)."""

    handler: Annotated[
        str,
        opt("ASYA_HANDLER", "the handler: module:func, module:Class.method, ...", cli=False),
    ] = ""
    socket: Annotated[
        str | None,
        opt(
            None,
            "socket path (instead of ASYA_SOCKET_DIR/ASYA_SOCKET_NAME)",
            metavar="PATH",
        ),
    ] = None
    socket_dir: Annotated[
        str, opt("ASYA_SOCKET_DIR", "directory of the socket and runtime-ready", metavar="DIR")
    ] = "/var/run/asya"
    socket_name: Annotated[
        str, opt("ASYA_SOCKET_NAME", "the socket's file name", metavar="NAME")
    ] = "asya-runtime.sock"
    socket_chmod: Annotated[
        str,
        opt(
            "ASYA_SOCKET_CHMOD",
            "the socket file's octal mode (empty leaves it as is)",
            metavar="MODE",
            empty_ok=True,
            check=_octal,
        ),
    ] = "0o666"
    concurrency: Annotated[
        int, opt("ASYA_RUNTIME_CONCURRENCY", "invocations run at once", ge=1)
    ] = DEFAULT_CONCURRENCY
    max_frame_bytes: Annotated[
        int,
        opt(
            "ASYA_MAX_FRAME_BYTES",
            "largest frame accepted or sent",
            default_text="16 MiB",
            ge=1,
        ),
    ] = DEFAULT_MAX_FRAME_BYTES
    shutdown_grace: Annotated[
        float,
        opt(
            "ASYA_RUNTIME_SHUTDOWN_GRACE",
            "on SIGTERM/SIGINT, how long in-flight invocations may take to finish",
            duration=True,
            ge=0,
        ),
    ] = DEFAULT_SHUTDOWN_GRACE
    log_level: Annotated[
        str,
        opt(
            "ASYA_LOG_LEVEL",
            "DEBUG, INFO, WARNING or ERROR",
            metavar="LEVEL",
            check=_log_level,
        ),
    ] = "INFO"

    @property
    def socket_path(self) -> Path:
        if self.socket:
            return Path(self.socket)
        return Path(self.socket_dir or "/var/run/asya") / (self.socket_name or "asya-runtime.sock")

    def server_config(self) -> ServerConfig:
        raw = self.socket_chmod.strip()
        return ServerConfig(
            socket_path=self.socket_path,
            concurrency=self.concurrency,
            max_frame_bytes=self.max_frame_bytes,
            socket_mode=int(raw, 8) if raw else None,
            shutdown_grace=self.shutdown_grace,
        )


def socket_path_from_env(env: Mapping[str, str]) -> Path:
    """`$ASYA_SOCKET_DIR/$ASYA_SOCKET_NAME` with upstream's defaults."""
    return RuntimeConfig(
        socket_dir=env.get("ASYA_SOCKET_DIR") or "/var/run/asya",
        socket_name=env.get("ASYA_SOCKET_NAME") or "asya-runtime.sock",
    ).socket_path


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Run an Asya actor handler.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="load a handler and serve asya-abi/1 on a Unix socket",
        description="Load a handler and serve asya-abi/1 on a Unix socket. Every option can "
        "also be set by the variable named in its help; the option wins.",
    )
    run.add_argument(
        "spec",
        nargs="?",
        help="module:func, module:Class.method, module.func or module.Class.method "
        "[ASYA_HANDLER, required]",
    )
    add_arguments(run, RuntimeConfig)

    inv = sub.add_parser("invoke", help="send one invoke and print each frame as a JSON line")
    inv.add_argument("payload", help="payload JSON (or a whole envelope with --envelope)")
    inv.add_argument(
        "--socket",
        metavar="PATH",
        help="socket path [ASYA_SOCKET_DIR/ASYA_SOCKET_NAME, default "
        "/var/run/asya/asya-runtime.sock]",
    )
    inv.add_argument(
        "--route", default="", metavar="A,B", help="comma-separated actors [default none]"
    )
    inv.add_argument(
        "--envelope", action="store_true", help="the JSON is a full envelope [default false]"
    )
    inv.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of silence allowed [default no limit]",
    )
    return p


def _run(args: argparse.Namespace, cfg: RuntimeConfig) -> int:
    spec = args.spec or cfg.handler
    config = cfg.server_config()  # checked before loading: a typo should not cost a model load
    ensure_cwd_importable()
    try:
        handler = load_handler(spec)
    except HandlerLoadError as exc:
        print(f"asya-runtime: cannot load handler: {exc}", file=sys.stderr)
        return 1
    # Everything imported so far (the handler's model included) lives for the whole process.
    freeze_startup_objects()
    try:
        anyio.run(_serve_until_signal, handler, config)
    except OSError as exc:
        print(f"asya-runtime: cannot serve on {config.socket_path}: {exc}", file=sys.stderr)
        return 1
    _exit_past_abandoned_threads()
    return 0


def _exit_past_abandoned_threads() -> None:
    """A sync handler cancelled at shutdown still blocks its worker thread, and Python would
    wait for it at exit. The socket and ready file are gone and every `end` was sent: leave."""
    # Threads inside a handler, not live threads: anyio's idle workers outlive anyio.run for
    # a moment (they stop when the root task ends) and made this fire when nothing ran.
    stuck = sync_calls_running()
    if stuck:
        log.warning("exiting past %d worker thread(s) still running a sync handler", stuck)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _serve_until_signal(handler: LoadedHandler, config: ServerConfig) -> None:
    """First SIGTERM/SIGINT: graceful stop (see `serve`); a second one: cancel at once."""
    stop = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def run_server(*, task_status: TaskStatus[Path]) -> None:
                await serve(handler, config, stop=stop, task_status=task_status)
                tg.cancel_scope.cancel()  # drained: stop waiting for signals

            await tg.start(run_server)
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stop.is_set():
                    log.info("%s: shutting down gracefully", name)
                    stop.set()
                else:
                    log.warning("%s again: cancelling the invocations still running", name)
                    tg.cancel_scope.cancel()
                    break


def _invoke(args: argparse.Namespace, cfg: RuntimeConfig) -> int:
    from .client import envelope_for, invoke_once, raw_invoke

    try:
        data = json.loads(args.payload)
    except ValueError as exc:
        print(f"asya-runtime: payload is not JSON: {exc}", file=sys.stderr)
        return 2
    if args.envelope:
        if not isinstance(data, dict):
            print("asya-runtime: --envelope needs a JSON object", file=sys.stderr)
            return 2
        request = raw_invoke(data)
    else:
        route = [a.strip() for a in args.route.split(",") if a.strip()]
        request = raw_invoke(msgspec.to_builtins(envelope_for(data, route)))
    path = str(cfg.socket_path)
    failed = False
    try:
        for frame in invoke_once(path, request, timeout=args.timeout):
            sys.stdout.write(msgspec.json.encode(frame).decode() + "\n")
            sys.stdout.flush()
            failed = failed or isinstance(frame, Error)
            if isinstance(frame, End):
                break
    except BrokenPipeError:  # our stdout was closed (`| head`)
        return 0
    except OSError as exc:
        print(f"asya-runtime: {path}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ
    try:
        cfg = load(RuntimeConfig, env, given_from_args(args, RuntimeConfig))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "run":
        return _run(args, cfg)
    return _invoke(args, cfg)


if __name__ == "__main__":
    sys.exit(main())
