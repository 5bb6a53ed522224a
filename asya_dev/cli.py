"""`asya dev`: the one-command local mesh on the embedded queue.

Plans the processes (gateway; per actor a runtime and an env-configured sidecar; end-actor
sidecars for x-sink and x-sump), runs them under `Supervisor`, waits until each is ready, then
either streams one prompt's task to the terminal or keeps serving the web page until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import msgspec
from anyio.abc import TaskGroup

from asya_gateway.flows import Flow, Flows, load_flows
from asya_runtime import __version__
from asya_runtime.settings import load
from asya_runtime.settings_cli import Parser, add_arguments, given_from_args
from asya_runtime.wire import READY_FILE
from asya_sidecar.metrics import NAMESPACE as METRICS_NAMESPACE

from .image import add_image_command
from .options import (
    DEFAULT_HANDLERS,
    END_ACTORS,
    SOCKET_NAME,
    DevOptions,
    DevSettings,
    options_from,
    parse_actor_overrides,
)
from .render import SseParser, TerminalRenderer
from .supervisor import ChildSpec, Supervisor, python_script

PROG = "asya"


@dataclass(frozen=True)
class MeshPlan:
    gateway_url: str
    children: list[ChildSpec]
    runtime_ready_files: list[Path]
    sidecar_health_urls: list[str]
    replica_urls: list[str] = dataclasses.field(default_factory=list)  # beyond gateway_url
    # The actors' sidecar /metrics: ready once each one's gateway task feed is connected, so
    # a cancel right after "mesh ready" reaches the running handler.
    feed_metrics_urls: list[str] = dataclasses.field(default_factory=list)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # url or path → what it is


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan_mesh(
    opts: DevOptions, base_env: Mapping[str, str], port_for: Callable[[], int] = _free_port
) -> MeshPlan:
    """The processes of the mesh, each configured only through its environment."""
    missing = [a for a in opts.route if a not in opts.handlers]
    if missing:
        raise ValueError(f"no handler for actor(s) {missing}: add --actor NAME=module:attr")
    workdir = opts.workdir.resolve()
    url = f"http://127.0.0.1:{opts.port}"
    # Children import handlers from the current directory (e.g. examples.* in a clone).
    pythonpath = os.pathsep.join(filter(None, [os.getcwd(), base_env.get("PYTHONPATH", "")]))
    common = {
        **base_env,
        "PYTHONPATH": pythonpath,
        "PYTHONUNBUFFERED": "1",
        "ASYA_TRANSPORT": opts.transport,
        "ASYA_SQLITE_PATH": str(workdir / "queues.db"),
        "ASYA_NAMESPACE": opts.namespace,
        "ASYA_LOG_FORMAT": "console",
    }
    flows_file = workdir / "flows.json"  # written by run_dev: the route as flow `dev`
    # A fresh mesh token per run (unless the environment sets one): only this run's sidecars
    # can post events to its gateways.
    # A listed set of tokens (a rotation in progress): sidecars send the last, the newest.
    accepted = base_env.get("ASYA_GATEWAY_MESH_TOKEN", "")
    listed = [t.strip() for t in accepted.split(",") if t.strip()]
    token = listed[-1] if listed else secrets.token_urlsafe(32)
    gateway_env = {
        **common,
        "ASYA_GATEWAY_MESH_TOKEN": accepted if listed else token,
        "ASYA_GATEWAY_FLOWS": str(flows_file),
        "ASYA_GATEWAY_DATABASE_URL": opts.database_url or f"sqlite:///{workdir / 'gateway.db'}",
    }
    children = []
    replicas = [f"http://127.0.0.1:{opts.port + i}" for i in range(opts.gateways)]
    for i, gw_url in enumerate(replicas):
        children.append(
            ChildSpec(
                "gateway" if i == 0 else f"gateway-{i + 1}",
                [
                    python_script("asya-gateway"),
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(opts.port + i),
                    "--public-url",
                    gw_url,
                    *(
                        ["--mesh-port", str(opts.mesh_port + i)]
                        if opts.mesh_port is not None
                        else []
                    ),
                ],
                gateway_env,
            )
        )
    # Sidecars report (and follow the feed) on the mesh listener when there is one.
    report_url = url if opts.mesh_port is None else f"http://127.0.0.1:{opts.mesh_port}"
    ready_files, health, feeds = [], [], []
    for actor in opts.route:
        sock_dir = workdir / actor  # one dir per actor: runtime-ready sits next to the socket
        children.append(
            ChildSpec(
                f"{actor}/runtime",
                [
                    python_script("asya-runtime"),
                    "run",
                    opts.handlers[actor],
                    "--socket",
                    str(sock_dir / SOCKET_NAME),
                ],
                common,
            )
        )
        ready_files.append(sock_dir / READY_FILE)
    for actor in [*opts.route, *END_ACTORS]:
        metrics_port = port_for()
        env = {
            **common,
            "ASYA_ACTOR_NAME": actor,
            "ASYA_GATEWAY_URL": report_url,
            "ASYA_GATEWAY_TOKEN": token,
            "ASYA_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
            "ASYA_CONCURRENCY": "4",
            "ASYA_IS_END_ACTOR": "true" if actor in END_ACTORS else "false",
        }
        if actor not in END_ACTORS:
            env |= {"ASYA_SOCKET_DIR": str(workdir / actor), "ASYA_SOCKET_NAME": SOCKET_NAME}
        children.append(ChildSpec(f"{actor}/sidecar", [python_script("asya-sidecar"), "run"], env))
        health.append(f"http://127.0.0.1:{metrics_port}/health")
        if actor not in END_ACTORS:
            feeds.append(f"http://127.0.0.1:{metrics_port}/metrics")
    labels = {f"{g}/health": f"gateway {g}" for g in replicas}
    for actor, h in zip([*opts.route, *END_ACTORS], health, strict=True):
        labels[h] = f"{actor}'s sidecar ({h})"
    for actor, f in zip(opts.route, feeds, strict=True):
        labels[f] = f"{actor}'s sidecar on its gateway's task feed ({f})"
    for actor, r in zip(opts.route, ready_files, strict=True):
        labels[str(r)] = f"{actor}'s runtime ({r})"
    return MeshPlan(url, children, ready_files, health, replicas[1:], feeds, labels)


def dev_flows(opts: DevOptions) -> bytes:
    """The gateway's flows file: the route as flow `dev`, plus the user's `--flows`."""
    flows = load_flows(opts.flows_file) if opts.flows_file else Flows()
    dev = Flow(name="dev", route=list(opts.route), description="the asya dev route")
    return msgspec.json.encode({"flows": list(flows.with_flow(dev))})


FEED_CONNECTED = f"{METRICS_NAMESPACE}_gateway_feed_connected"


def feed_connected(metrics_text: str) -> bool:
    """Whether a sidecar's `/metrics` text says its gateway task feed is connected."""
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name == FEED_CONNECTED:
            try:
                return float(value) >= 1
            except ValueError:
                return False
    return False


class MeshNotReady(TimeoutError):
    """The mesh was not ready in time; `waiting` names what still was not."""

    def __init__(self, limit: float, waiting: list[str]) -> None:
        super().__init__(f"the mesh was not ready after {limit}s; waiting for {', '.join(waiting)}")
        self.waiting = waiting


async def wait_ready(plan: MeshPlan, limit: float) -> None:
    """Until the gateway, every runtime and every sidecar says it is ready and each actor's
    sidecar follows its gateway's task feed (polled: HTTP health and files have no event to
    wait on). Raises `MeshNotReady` naming what was still missing after `limit` seconds."""
    gateways = [plan.gateway_url, *plan.replica_urls]
    pending: dict[str, Callable[[httpx.Response], bool]] = {
        url: lambda r: r.status_code == 200
        for url in [*(f"{g}/health" for g in gateways), *plan.sidecar_health_urls]
    }
    for url in plan.feed_metrics_urls:
        pending[url] = lambda r: r.status_code == 200 and feed_connected(r.text)
    pending_files = list(plan.runtime_ready_files)
    try:
        with anyio.fail_after(limit):
            async with httpx.AsyncClient(timeout=2.0) as client:
                while pending or pending_files:
                    pending_files = [p for p in pending_files if not p.exists()]
                    for url, ready in list(pending.items()):
                        try:
                            ok = ready(await client.get(url))
                        except httpx.HTTPError:
                            ok = False
                        if ok:
                            del pending[url]
                    if pending or pending_files:
                        await anyio.sleep(0.1)
    except TimeoutError:
        waiting = [plan.labels.get(u, u) for u in pending]
        waiting += [plan.labels.get(str(f), str(f)) for f in pending_files]
        raise MeshNotReady(limit, waiting) from None


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
    "MeshNotReady",
    "MeshPlan",
    "feed_connected",
    "main",
    "options_from",
    "parse_actor_overrides",
    "plan_mesh",
    "run_dev",
    "wait_ready",
]
