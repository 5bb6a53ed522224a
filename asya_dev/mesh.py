"""The local mesh's processes, planned from `asya dev`'s options (each child configured only
through its environment), and the wait until every one of them says it is ready."""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import msgspec

from asya_gateway.flows import Flow, Flows, load_flows
from asya_runtime.wire import READY_FILE
from asya_sidecar.metrics import NAMESPACE as METRICS_NAMESPACE

from .options import END_ACTORS, SOCKET_NAME, DevOptions
from .supervisor import ChildSpec, python_script


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


__all__ = [
    "FEED_CONNECTED",
    "MeshNotReady",
    "MeshPlan",
    "dev_flows",
    "feed_connected",
    "plan_mesh",
    "wait_ready",
]
