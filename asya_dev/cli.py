"""`asya dev`: the one-command local mesh on the embedded queue.

Plans the processes (gateway; per actor a runtime and an env-configured sidecar; end-actor
sidecars for x-sink and x-sump), runs them under `Supervisor`, waits until each is ready, then
either streams one prompt's task to the terminal or keeps serving the web page until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import anyio
import httpx
import msgspec
from anyio.abc import TaskGroup

from asya_runtime import __version__
from asya_runtime.settings import load
from asya_runtime.settings_cli import Parser, add_arguments, given_from_args

from .image import add_image_command
from .mesh import MeshNotReady, dev_flows, plan_mesh, wait_ready
from .options import (
    DEFAULT_HANDLERS,
    DevOptions,
    DevSettings,
    options_from,
    parse_actor_overrides,
)
from .render import SseParser, TerminalRenderer
from .supervisor import Supervisor

PROG = "asya"


async def stream_prompt(
    gateway_url: str,
    route: list[str],
    prompt: str,
    out: TextIO,
    limit: float,
    renderer: TerminalRenderer | None = None,
) -> dict[str, Any] | None:
    """POST the task with `Accept: text/event-stream` and render its stream; the final update."""
    renderer = renderer or TerminalRenderer(out)
    parser = SseParser()
    body = {"route": route, "payload": {"prompt": prompt}}
    with anyio.fail_after(limit):
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream(
                "POST",
                f"{gateway_url}/api/v1/mesh",
                json=body,
                headers={"Accept": "text/event-stream"},
            ) as resp,
        ):
            if resp.status_code != 200:
                await resp.aread()
                renderer.message(f"asya dev: the gateway refused the task: {resp.text}")
                return None
            async for line in resp.aiter_lines():
                for ev in parser.feed(line):
                    renderer.event(ev.event, msgspec.json.decode(ev.data))
    return renderer.final


async def run_dev(opts: DevOptions, env: Mapping[str, str], out: TextIO) -> int:
    """Run the mesh; the process exit code (0 ok or stopped by Ctrl-C, 1 task failed, 2 mesh
    failed)."""
    if opts.workdir.exists():
        shutil.rmtree(opts.workdir)  # a fresh queue file: no leftovers of an earlier run replay
    opts.workdir.mkdir(parents=True)
    plan = plan_mesh(opts, env)
    (opts.workdir / "flows.json").write_bytes(dev_flows(opts))
    sup = Supervisor(out, verbose=opts.verbose)
    renderer = TerminalRenderer(out)
    code = 2

    async def on_signal(tg: TaskGroup) -> None:
        nonlocal code
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                renderer.message("asya dev: stopping the mesh (Ctrl-C)")
                code = 0  # the user asked: not a failure
                tg.cancel_scope.cancel()
                return

    async def on_crash(tg: TaskGroup) -> None:
        nonlocal code
        await sup.crashed.wait()
        assert sup.crash is not None
        renderer.close()
        sup.report_crash(sup.crash)
        code = 2
        tg.cancel_scope.cancel()

    async def serve(tg: TaskGroup, pumps: TaskGroup) -> None:
        nonlocal code
        out.write(f"starting {len(plan.children)} processes (state in {opts.workdir}/)...\n")
        out.flush()
        for spec in plan.children:
            await sup.start(pumps, spec)
        try:
            await wait_ready(plan, opts.ready_timeout)
        except MeshNotReady as exc:
            out.write(f"asya dev: {exc}\n")
            tg.cancel_scope.cancel()
            return
        actors = ", ".join(f"{a}={opts.handlers[a]}" for a in opts.route)
        out.write(f"mesh ready: {actors}\n")
        if opts.prompt is None:
            page = f"{plan.gateway_url}/?route={','.join(opts.route)}"
            out.write(f"open {page} (Ctrl-C stops the mesh)\n")
            for replica in plan.replica_urls:  # every replica serves every task of the mesh
                out.write(f"gateway replica: {replica} (same tasks, streams and flows)\n")
            out.flush()
            await anyio.sleep_forever()
        out.flush()
        assert opts.prompt is not None
        try:
            final = await stream_prompt(
                plan.gateway_url, opts.route, opts.prompt, out, opts.task_timeout, renderer
            )
            code = 0 if final and final.get("status") == "succeeded" else 1
        except TimeoutError:
            renderer.message(f"asya dev: no result after {opts.task_timeout:g}s (--timeout)")
            code = 1
        except httpx.HTTPError as exc:
            renderer.message(f"asya dev: lost the gateway at {plan.gateway_url}: {exc}")
            code = 2
        tg.cancel_scope.cancel()

    try:
        # Log pumps live in an outer group, so children's last lines are still read while
        # they shut down; the inner group (mesh, signals, crash watch) ends first.
        async with anyio.create_task_group() as pumps:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(on_signal, tg)
                    tg.start_soon(on_crash, tg)
                    tg.start_soon(serve, tg, pumps)
            finally:
                renderer.close()
                with anyio.CancelScope(shield=True):
                    await sup.stop_all()
                pumps.cancel_scope.cancel()
    finally:
        sup.kill_all_now()  # belt and braces, e.g. after a second Ctrl-C
    out.flush()
    return code


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Asya developer tools.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = sub.add_parser(
        "dev",
        help="start a whole local mesh (gateway, runtimes, sidecars, x-sink, x-sump)",
        description="Start a whole local mesh (gateway, runtimes, sidecars, x-sink, x-sump). "
        "Every option can also be set by the variable named in its help; the option wins.",
    )
    add_arguments(dev, DevSettings)
    for command in SUBCOMMANDS:
        command(sub)
    return p


# Other sub-commands register here: each is `add(subparsers)` that adds its parser and sets
# `func=handler(args) -> int` with `set_defaults` (e.g. `asya image build`).
SUBCOMMANDS: list[Callable[[Any], None]] = [add_image_command]


def dev(args: argparse.Namespace) -> int:
    """`asya dev`: the exit status."""
    try:
        opts = options_from(load(DevSettings, os.environ, given_from_args(args, DevSettings)))
        plan_mesh(opts, os.environ)
        dev_flows(opts)  # a bad --flows file: one line now, not a gateway crash later
    except ValueError as exc:  # ConfigError and FlowsError included
        print(f"{PROG} dev: {exc}", file=sys.stderr)
        return 2
    code = 1
    try:
        code = anyio.run(run_dev, opts, dict(os.environ), sys.stdout)
    except* BrokenPipeError:  # output piped into e.g. `head`: the mesh is already stopped
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "dev":
            return dev(args)
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:  # a Ctrl-C before the mesh's own handler is in place
        return 0


__all__ = [
    "DEFAULT_HANDLERS",
    "SUBCOMMANDS",
    "DevOptions",
    "DevSettings",
    "main",
    "options_from",
    "parse_actor_overrides",
    "run_dev",
]
