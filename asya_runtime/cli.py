"""`asya-runtime`: the command line (argparse: the runtime stays light).

    asya-runtime run [SPEC] [--socket PATH] [--concurrency N] [--max-frame-bytes N]
                     [--shutdown-grace DURATION]
    asya-runtime invoke [--socket PATH] [--route a,b] [--envelope] [--timeout S] JSON

This is the only module that reads the environment (ASYA_HANDLER, ASYA_SOCKET_DIR,
ASYA_SOCKET_NAME, ASYA_SOCKET_CHMOD, ASYA_RUNTIME_CONCURRENCY, ASYA_MAX_FRAME_BYTES,
ASYA_RUNTIME_SHUTDOWN_GRACE, ASYA_LOG_LEVEL). Flags win over the environment. A bad value
exits 2 with one line naming the variable or flag.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import anyio
import msgspec
from anyio.abc import TaskStatus

from . import __version__
from .durations import parse_duration
from .errors import HandlerLoadError
from .loader import LoadedHandler, ensure_cwd_importable, load_handler
from .server import DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE, ServerConfig, serve
from .wire import DEFAULT_MAX_FRAME_BYTES, End, Error

__all__ = ["main", "socket_path_from_env"]

log = logging.getLogger("asya_runtime")


def socket_path_from_env(env: Mapping[str, str]) -> Path:
    """`$ASYA_SOCKET_DIR/$ASYA_SOCKET_NAME` with upstream's defaults."""
    return Path(env.get("ASYA_SOCKET_DIR") or "/var/run/asya") / (
        env.get("ASYA_SOCKET_NAME") or "asya-runtime.sock"
    )


class ConfigError(ValueError):
    """A bad environment value; the message names the variable."""


def _chmod(env: Mapping[str, str]) -> int | None:
    raw = env.get("ASYA_SOCKET_CHMOD", "0o666").strip()
    if not raw:
        return None
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise ConfigError(
            f"ASYA_SOCKET_CHMOD: invalid octal mode {raw!r} "
            "(e.g. 0o666, 600, or empty to leave as is)"
        )
    return mode


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r} (expected an integer >= 1)")
    return value


def _positive_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return _positive(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _duration(text: str) -> float:
    """Seconds >= 0 from `25`, `2.5`, `500ms`, `1m30s`; raises ValueError."""
    return parse_duration(text)


def _grace_flag(text: str) -> float:
    try:
        return _duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grace_env(env: Mapping[str, str]) -> float:
    raw = env.get("ASYA_RUNTIME_SHUTDOWN_GRACE", "").strip()
    if not raw:
        return DEFAULT_SHUTDOWN_GRACE
    try:
        return _duration(raw)
    except ValueError as exc:
        raise ConfigError(f"ASYA_RUNTIME_SHUTDOWN_GRACE: {exc}") from None


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the flag (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="asya-runtime", description="Run an Asya actor handler.")
    p.add_argument("--version", action="version", version=f"asya-runtime {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load a handler and serve asya-abi/1 on a Unix socket")
    run.add_argument(
        "spec",
        nargs="?",
        help="module:func, module:Class.method, module.func, "
        "module.Class.method (default: $ASYA_HANDLER)",
    )
    run.add_argument(
        "--socket",
        type=Path,
        help="socket path (default: "
        "$ASYA_SOCKET_DIR/$ASYA_SOCKET_NAME, /var/run/asya/asya-runtime.sock)",
    )
    run.add_argument(
        "--concurrency",
        type=_positive,
        help=f"invocations run at once (default $ASYA_RUNTIME_CONCURRENCY or "
        f"{DEFAULT_CONCURRENCY})",
    )
    run.add_argument(
        "--max-frame-bytes",
        type=_positive,
        help="largest frame accepted or sent (default $ASYA_MAX_FRAME_BYTES or 16 MiB)",
    )
    run.add_argument(
        "--shutdown-grace",
        type=_grace_flag,
        metavar="DURATION",
        help="on SIGTERM/SIGINT, how long in-flight invocations may take to finish: seconds "
        f"or Go-style (500ms, 1m) (default $ASYA_RUNTIME_SHUTDOWN_GRACE or "
        f"{DEFAULT_SHUTDOWN_GRACE:g}s)",
    )

    inv = sub.add_parser("invoke", help="send one invoke and print each frame as a JSON line")
    inv.add_argument("payload", help="payload JSON (or a whole envelope with --envelope)")
    inv.add_argument("--socket", type=Path)
    inv.add_argument("--route", default="", help="comma-separated actors: curr,next,...")
    inv.add_argument("--envelope", action="store_true", help="the JSON is a full envelope")
    inv.add_argument("--timeout", type=float, default=None, help="seconds of silence allowed")
    return p


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    spec = args.spec or env.get("ASYA_HANDLER", "")
    try:  # before loading the handler: a typo should not cost a model load
        config = ServerConfig(
            socket_path=args.socket or socket_path_from_env(env),
            concurrency=args.concurrency
            or _positive_env(env, "ASYA_RUNTIME_CONCURRENCY", DEFAULT_CONCURRENCY),
            max_frame_bytes=args.max_frame_bytes
            or _positive_env(env, "ASYA_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES),
            socket_mode=_chmod(env),
            shutdown_grace=_grace_env(env) if args.shutdown_grace is None else args.shutdown_grace,
        )
    except ConfigError as exc:
        print(f"asya-runtime: {exc}", file=sys.stderr)
        return 2
    ensure_cwd_importable()
    try:
        handler = load_handler(spec)
    except HandlerLoadError as exc:
        print(f"asya-runtime: cannot load handler: {exc}", file=sys.stderr)
        return 1
    # Everything imported so far (the handler's model included) lives for the whole process:
    # keep it out of the cyclic GC's generations so collections stay short on the hot path.
    gc.collect()
    gc.freeze()
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
    stuck = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and t.is_alive() and not t.daemon
    ]
    if stuck:
        log.warning("exiting past %d worker thread(s) still running a sync handler", len(stuck))
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


def _invoke(args: argparse.Namespace, env: Mapping[str, str]) -> int:
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
    path = str(args.socket or socket_path_from_env(env))
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
    level = (env.get("ASYA_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "run":
        return _run(args, env)
    return _invoke(args, env)


if __name__ == "__main__":
    sys.exit(main())
