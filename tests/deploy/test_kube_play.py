"""deploy/k8s played for real: images built from the checkout, pods on podman, RabbitMQ on the host.

A client on the host creates a task at the containerised gateway and watches the tokens stream
from the containerised actor; then the actor's pods go down with an envelope in flight, and the
envelope must be finished or back in its queue, and finish once the actor is played again.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.brokers import RABBITMQ_URL, require_broker

from . import kube

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1500)]

PODMAN = shutil.which("podman")
REPORT = kube.CACHE / "last-run.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def podman() -> str:
    kube.need(
        PODMAN is not None,
        "no container engine: podman not installed (apt-get install podman runc mmdebstrap)",
    )
    assert PODMAN is not None
    return PODMAN


@pytest.fixture(scope="module")
def images(podman: str) -> kube.Images:
    return kube.build_images(podman)


CLIENT_KEY = "deploy-test-client-key"  # the shipped manifests require client keys


class Mesh:
    def __init__(self, podman: str, tmp: Path, images: kube.Images) -> None:
        self.podman = podman
        run = uuid.uuid4().hex[:8]
        self.local = kube.Local(
            namespace=f"deploy{run}",
            exchange=f"asya-deploy-{run}",
            gateway_port=_free_port(),
            mesh_port=_free_port(),
            metrics_ports={n: _free_port() for n in ("tokens", "tokens-1", "x-sink", "x-sump")},
        )
        infra, _ = kube.split_secrets(
            kube.localize(kube.load_docs("gateway.yaml", "end-actors.yaml"), images, self.local)
        )
        actor = kube.localize(kube.load_docs("actor-tokens.yaml"), images, self.local)
        self.secret_names = list(kube.secret_values(RABBITMQ_URL, CLIENT_KEY))
        self.infra = kube.write_yaml(tmp / "infra.yaml", infra)
        self.actor = kube.write_yaml(tmp / "actor.yaml", actor)
        self.gateway = f"http://127.0.0.1:{self.local.gateway_port}"
        self.health = {
            n: f"http://127.0.0.1:{p}/health" for n, p in self.local.metrics_ports.items()
        }

    def secrets(self) -> None:
        for name, values in kube.secret_values(RABBITMQ_URL, CLIENT_KEY).items():
            kube.podman_secret(self.podman, name, values)

    def play(self, path: Path) -> None:
        kube.play(self.podman, path)

    def down(self, path: Path) -> None:
        kube.sh(self.podman, "kube", "down", str(path), check=False)

    def drain(self, path: Path, deployments: tuple[str, ...], grace: int) -> None:
        """What Kubernetes does to a pod going away (a rollout, a node drain): SIGTERM to every
        container, `grace` seconds to finish, then the pod is removed. `podman kube down`
        alone stops the containers within about 0.5 s (podman 4.3 does not honour
        terminationGracePeriodSeconds), so the outcome was a race between the runtime's and
        the sidecar's ends (seen once in CI: the envelope went to x-sump). Drained, the
        sidecar's grace (1 s here) runs out first and it requeues what is in flight."""
        pods = sh_lines(self.podman, "pod", "ps", "--format", "{{.Name}}")
        ours = [p for p in pods if any(p.startswith(f"{d}-pod-") for d in deployments)]
        assert ours, f"no pods of {deployments} among {pods}"
        kube.sh(self.podman, "pod", "stop", "-t", str(grace), *ours)
        print(kube.pod_logs(self.podman, deployments))  # how they shut down (shown on failure)
        self.down(path)

    def logs(self) -> str:
        return kube.pod_logs(
            self.podman, ("asya-gateway", "tokens", "tokens-1", "x-sink", "x-sump")
        )


@pytest.fixture
def mesh(podman: str, images: kube.Images, tmp_path: Path) -> Iterator[Mesh]:
    require_broker("rabbitmq")
    m = Mesh(podman, tmp_path, images)
    m.secrets()
    try:
        yield m
    finally:
        print(m.logs())  # shown by pytest when the test failed
        m.down(m.actor)
        m.down(m.infra)
        for name in m.secret_names:
            kube.sh(podman, "secret", "rm", name, check=False)


async def _wait_ok(client: httpx.AsyncClient, url: str) -> None:
    while True:
        try:
            if (await client.get(url, timeout=2)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await anyio.sleep(0.1)  # polling a condition, bounded by the caller's fail_after


async def _events(resp: httpx.Response) -> Any:
    """(event name, parsed data) from an SSE response."""
    name, data = "message", []
    async for line in resp.aiter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def _create(client: httpx.AsyncClient, mesh: Mesh, payload: dict[str, Any]) -> str:
    # The gateway refuses a task whose first actor has no queue yet (400): the actor's sidecar
    # declares it once it consumes, a moment after its /health answers.
    while True:
        r = await client.post(
            f"{mesh.gateway}/api/v1/mesh", json={"route": ["tokens"], "payload": payload}
        )
        if r.status_code == 201:
            return str(r.json()["id"])
        assert r.status_code == 400 and "queue" in r.text, r.text
        await anyio.sleep(0.2)


async def _stream(
    client: httpx.AsyncClient, mesh: Mesh, task: str, stop_after: int | None = None
) -> tuple[list[str], dict[str, Any], float | None]:
    """Tokens streamed for `task`, its last update, and when the first token arrived."""
    tokens: list[str] = []
    first: float | None = None
    last: dict[str, Any] = {}
    async with client.stream(
        "GET", f"{mesh.gateway}/stream/{task}?last_event_id=0", timeout=None
    ) as resp:
        assert resp.status_code == 200
        async for name, data in _events(resp):
            if name == "partial":
                first = first or time.monotonic()
                tokens.append(data["text"])
                if stop_after is not None and len(tokens) >= stop_after:
                    break
            elif name == "update":
                last = data
                if data["status"] in ("succeeded", "failed", "canceled"):
                    break
    return tokens, last, first


async def _received(client: httpx.AsyncClient, health_url: str) -> int:
    """Envelopes a sidecar took off its queue, from its Prometheus /metrics."""
    text = (await client.get(health_url.replace("/health", "/metrics"))).text
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("asya_actor_messages_received_total{")
        )
    )


async def _queue_depth(queue: str) -> int:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)


@pytest.mark.anyio
async def test_play_manifests_stream_tokens_and_survive_kube_down(
    mesh: Mesh, images: kube.Images
) -> None:
    report: dict[str, Any] = {"image_mb": images.sizes_mb, "build_s": images.times_s}
    t_play = time.monotonic()
    mesh.play(mesh.infra)
    mesh.play(mesh.actor)
    report["kube_play_s"] = round(time.monotonic() - t_play, 2)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as client:
        with anyio.fail_after(120):
            await _wait_ok(client, f"{mesh.gateway}/health")
            for url in mesh.health.values():
                await _wait_ok(client, url)
            report["play_to_ready_s"] = round(time.monotonic() - t_play, 2)
            task = await _create(client, mesh, {"prompt": "hello from a pod", "token_delay": 0.01})
            tokens, last, first = await _stream(client, mesh, task)
        assert first is not None, f"no token streamed; last update {last}"
        report["play_to_first_token_s"] = round(first - t_play, 2)
        # The gateway's sqlite store lives on its state volume: the non-root user can write it.
        exec_ = [mesh.podman, "exec", "asya-gateway-pod-0-gateway", "test", "-w", "/var/lib/asya"]
        writable = await anyio.run_process(exec_, check=False)
        assert writable.returncode == 0, "/var/lib/asya is not writable for the gateway's user"
        assert last["status"] == "succeeded", last
        text = last["result"]["text"]
        assert text.startswith("You asked: hello from a pod. Actors stream tokens")
        assert "".join(tokens) == text  # every token reached the host, in order
        assert len(tokens) > 10

        # Scale: the two replicas compete for the one queue; each takes a share of the tasks.
        with anyio.fail_after(120):
            ids = [
                await _create(client, mesh, {"prompt": f"n{i}", "token_delay": 0}) for i in range(6)
            ]
            for tid in ids:
                _, done, _ = await _stream(client, mesh, tid)
                assert done["status"] == "succeeded", done
        shares = [await _received(client, mesh.health[n]) for n in ("tokens", "tokens-1")]
        report["replica_shares"] = shares
        assert sum(shares) == 7 and min(shares) >= 1, shares

        # An envelope in flight when the actor's pods go down (an upgrade, a node drain).
        with anyio.fail_after(60):
            slow = await _create(client, mesh, {"prompt": "slow", "token_delay": 0.3})
            seen, _, _ = await _stream(client, mesh, slow, stop_after=3)
        assert len(seen) == 3
        t_down = time.monotonic()
        mesh.drain(mesh.actor, ("tokens", "tokens-1"), grace=75)  # the manifest's grace
        report["kube_down_s"] = round(time.monotonic() - t_down, 2)
        view = (await client.get(f"{mesh.gateway}/api/v1/mesh/{slow}")).json()
        status = view["status"]
        assert status not in ("failed", "canceled"), (status, view.get("error"))
        if status != "succeeded":
            # Not finished within the drain: it must be back in its queue, untouched.
            depth = await _queue_depth(f"asya-{mesh.local.namespace}-tokens")
            assert depth == 1, f"the in-flight envelope is neither finished nor requeued ({depth})"
        report["in_flight_at_down"] = "finished" if status == "succeeded" else "requeued"

        # Played again (the upgrade's new pod), the requeued envelope runs to completion.
        mesh.play(mesh.actor)
        with anyio.fail_after(120):
            _, last, _ = await _stream(client, mesh, slow)
        assert last["status"] == "succeeded", last
        assert last["result"]["text"].startswith("You asked: slow.")
    REPORT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def sh_lines(*argv: str) -> list[str]:
    return kube.sh(*argv, check=False).split()


def test_images_run_as_non_root_without_a_compiler(podman: str, images: kube.Images) -> None:
    for kind, name in images.names.items():
        probe = "id -u; for c in gcc cc g++ clang make; do command -v $c; done; true"
        out = kube.sh(
            podman, "run", "--rm", "--network", "none", "--entrypoint", "sh", name, "-c", probe
        )
        assert out.split() == ["10001"], f"{kind}: {out!r}"
    entry = kube.sh(
        podman,
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        images.names["tokens"],
    )
    assert entry.strip() == '["asya-runtime","run"]'
    env = kube.sh(
        podman, "image", "inspect", "--format", "{{json .Config.Env}}", images.names["tokens"]
    )
    assert "ASYA_HANDLER=tokens:stream" in env


def test_asya_image_build_installs_requirements_from_wheels(
    podman: str, images: kube.Images, tmp_path: Path
) -> None:
    from asya_dev.image import build

    deps = next(kube.CACHE.glob("wheels-*"), None)
    if deps is None:
        pytest.fail(f"no wheelhouse under {kube.CACHE} (the images fixture builds one)")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    six = next(deps.glob("six-*.whl"), None)
    if six is None:
        pytest.fail(f"no six wheel in {deps}: the test installs it as a handler's requirement")
    (wheels / six.name).write_bytes(six.read_bytes())
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "agent.py").write_text("import six\n\ndef run(p):\n    return p\n")
    (tmp_path / "code" / "requirements.txt").write_text("six\n")
    tag = "localhost/asya-reqs:test"
    code = build(
        "code/agent.py:run",
        tag,
        cwd=tmp_path,
        runtime_image=images.names["runtime"],
        engine="podman",
        wheels=wheels,
        quiet=True,
    )
    try:
        assert code == 0
        out = kube.sh(
            podman,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            tag,
            "-c",
            "import agent, six; print(agent.run.__name__, six.__name__)",
        )
        assert out.split() == ["run", "six"]
    finally:
        kube.sh(podman, "rmi", tag, check=False)
