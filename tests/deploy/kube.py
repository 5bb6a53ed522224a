"""Build the images from the checkout and play deploy/k8s with podman, for tests/deploy.

Offline on purpose: the base image comes from mmdebstrap (Debian's own packages), the Python
packages from a wheelhouse built on the host. Both, and the dependencies' wheels, are cached
under ASYA_DEPLOY_CACHE (default /tmp/asya-deploy-cache) between runs; the project's own wheel
is rebuilt every run (reproducibly, so an unchanged checkout hits the engine's layer cache).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CACHE = Path(os.environ.get("ASYA_DEPLOY_CACHE", "/tmp/asya-deploy-cache"))
BASE_IMAGE = "localhost/debian-python:bookworm"
TAG = "test"
KINDS = ("runtime", "sidecar", "gateway")


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail under CI (env CI set), when a tool this test needs is missing."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def sh(*argv: str, timeout: float = 600, check: bool = True, **kw: Any) -> str:
    """Run a command; on failure raise with its output (the build log is the diagnosis)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def load_docs(*names: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


@dataclass
class Images:
    names: dict[str, str]  # runtime/sidecar/gateway/tokens -> local image name
    sizes_mb: dict[str, float] = field(default_factory=dict)
    times_s: dict[str, float] = field(default_factory=dict)


def _timed(times: dict[str, float], key: str, fn: Callable[[], object]) -> None:
    t0 = time.monotonic()
    fn()
    times[key] = round(time.monotonic() - t0, 1)


def ensure_base(podman: str, times: dict[str, float]) -> None:
    if subprocess.run([podman, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    rootfs = CACHE / "rootfs.tar"
    if not rootfs.exists():
        mmdebstrap = shutil.which("mmdebstrap")
        need(mmdebstrap is not None, "mmdebstrap not installed (apt-get install mmdebstrap)")
        assert mmdebstrap is not None
        part = CACHE / "rootfs.tar.part"
        include = "--include=python3,python3-venv,ca-certificates"
        _timed(
            times,
            "mmdebstrap",
            lambda: sh(
                mmdebstrap, "--variant=minbase", "--format=tar", include, "bookworm", str(part)
            ),
        )
        part.rename(rootfs)
    _timed(times, "import_base", lambda: sh(podman, "import", str(rootfs), BASE_IMAGE))


def wheelhouse(times: dict[str, float]) -> Path:
    """A build context dir with wheels/: cached dependencies + this checkout's wheel."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    deps = CACHE / f"wheels-{key}"
    if not deps.is_dir():
        tmp = CACHE / f"wheels-{key}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(tmp)]
        _timed(times, "wheelhouse", lambda: sh(*pip, f"{ROOT}[gateway]", cwd=ROOT))
        for own in tmp.glob("asya_mesh-*.whl"):
            own.unlink()
        tmp.rename(deps)
    ctx = CACHE / f"ctx-{os.getpid()}"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "wheels").mkdir(parents=True)
    for whl in deps.iterdir():
        os.link(whl, ctx / "wheels" / whl.name)
    # The build backend's wheels, cached too: building our wheel then needs no package index.
    backend = CACHE / f"backend-{key}"
    if not backend.is_dir():
        tmp = CACHE / f"backend-{key}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(tmp), *requires)
        tmp.rename(backend)
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")  # same bytes for the same source
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"]
    pip += ["--find-links", str(backend), "--wheel-dir", str(ctx / "wheels"), str(ROOT)]
    _timed(times, "own_wheel", lambda: sh(*pip, env=env))
    return ctx


def build_images(podman: str) -> Images:
    from asya_dev.image import build as build_handler

    CACHE.mkdir(parents=True, exist_ok=True)
    images = Images({k: f"localhost/asya-{k}:{TAG}" for k in (*KINDS, "tokens")})
    times = images.times_s
    ensure_base(podman, times)
    ctx = wheelhouse(times)
    try:
        for kind in KINDS:
            cf = str(ROOT / "deploy" / f"Containerfile.{kind}")
            argv = [podman, "build", "-q", "--build-arg", f"BASE={BASE_IMAGE}", "-f", cf]
            _timed(
                times,
                f"build_{kind}",
                lambda a=argv, k=kind: sh(*a, "-t", images.names[k], str(ctx)),
            )
        wheels_dir = ctx / "empty-wheels"
        wheels_dir.mkdir()

        def handler() -> None:
            code = build_handler(
                "examples/handlers/tokens.py:stream",
                images.names["tokens"],
                cwd=ROOT,
                runtime_image=images.names["runtime"],
                engine="podman",
                wheels=wheels_dir,
                quiet=True,
            )
            assert code == 0, "asya image build of the tokens handler failed"

        _timed(times, "build_tokens", handler)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    for k, name in images.names.items():
        size = sh(podman, "image", "inspect", "--format", "{{.Size}}", name).strip()
        images.sizes_mb[k] = round(int(size) / 1e6, 1)
    return images


def _containers(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for item in env:
        if item["name"] == name:
            item.pop("valueFrom", None)
            item["value"] = value
            return
    env.append({"name": name, "value": value})


@dataclass(frozen=True)
class Local:
    """What differs between a cluster and one host where every pod shares the network."""

    namespace: str
    exchange: str
    gateway_port: int
    metrics_ports: dict[str, int]  # pod (deployment name, `-1`... for replicas) -> metrics port
    mesh_port: int = 0  # the gateway's sidecar listener (--mesh-port); 0: as shipped
    shutdown_grace: str = "1s"  # short drains keep the in-flight test quick
    runtime_grace: str = "3s"


def localize(docs: list[dict[str, Any]], images: Images, local: Local) -> list[dict[str, Any]]:
    """The shipped manifests, adjusted only where one host differs from a cluster.

    Image names point at the local builds; ports are free ones (pods share the host's network
    here, so two sidecars cannot both listen on 8080); namespace and exchange are this run's
    own, so the shared broker's other users never see our envelopes; drains are short.
    """
    short = {f"asya-{k}:0.1.0": v for k, v in images.names.items()}
    out = []
    for doc in json.loads(json.dumps(docs)):
        out.append(doc)
        if doc["kind"] != "Deployment":
            continue
        # podman 4.3 gives every replica of a Deployment the same emptyDir volume (so two
        # runtimes would share one socket): each replica becomes a copy with its own volume.
        replicas, doc["spec"]["replicas"] = doc["spec"].get("replicas", 1), 1
        for i in range(1, replicas):
            copy = json.loads(json.dumps(doc))
            copy["metadata"]["name"] = f"{doc['metadata']['name']}-{i}"
            pod = copy["spec"]["template"]["spec"]
            for vol in pod.get("volumes", []):
                old, vol["name"] = vol["name"], f"{vol['name']}-{i}"
                for c in pod["containers"]:
                    for m in c.get("volumeMounts", []):
                        if m["name"] == old:
                            m["name"] = vol["name"]
            out.append(copy)
    for doc in out:
        if doc["kind"] != "Deployment":
            continue
        name = doc["metadata"]["name"]
        pod = doc["spec"]["template"]["spec"]
        pod["terminationGracePeriodSeconds"] = 10
        for c in _containers(doc):
            c["image"] = short.get(c["image"], c["image"])
            env_names = {e["name"] for e in c.get("env", [])}
            if "ASYA_NAMESPACE" in env_names:
                _set_env(c, "ASYA_NAMESPACE", local.namespace)
                _set_env(c, "ASYA_RABBITMQ_EXCHANGE", local.exchange)
            if "ASYA_SHUTDOWN_GRACE" in env_names:
                _set_env(c, "ASYA_SHUTDOWN_GRACE", local.shutdown_grace)
            if "ASYA_RUNTIME_SHUTDOWN_GRACE" in env_names:
                _set_env(c, "ASYA_RUNTIME_SHUTDOWN_GRACE", local.runtime_grace)
            if name == "asya-gateway":
                port = local.gateway_port
                c["args"] = ["run", "--host", "127.0.0.1", "--port", str(port)]
                _set_env(c, "ASYA_GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{port}")
                if local.mesh_port and "ASYA_GATEWAY_MESH_PORT" in env_names:
                    _set_env(c, "ASYA_GATEWAY_MESH_PORT", str(local.mesh_port))
                    _set_env(
                        c, "ASYA_GATEWAY_MESH_PUBLIC_URL", f"http://127.0.0.1:{local.mesh_port}"
                    )
            elif "ASYA_METRICS_ADDR" in env_names:
                port = local.metrics_ports[name]
                _set_env(c, "ASYA_METRICS_ADDR", f"127.0.0.1:{port}")
            else:
                continue
            # podman refuses port mappings on the host network, where they mean nothing anyway.
            c.pop("ports", None)
            for probe in ("readinessProbe", "livenessProbe"):
                if "httpGet" in c.get(probe, {}):
                    c[probe]["httpGet"]["port"] = port
    return out


def split_secrets(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(docs to play, Secrets by name). podman 4.3 stores a played Secret in a form its own
    secretKeyRef cannot read, so the test creates the podman secrets itself (`podman_secret`)."""
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    return [d for d in docs if d["kind"] != "Secret"], secrets


def secret_values(broker_url: str, client_key: str) -> dict[str, dict[str, str]]:
    """The podman secrets the kube-play test creates, by Secret name: one value per key the
    shipped Secret declares in `stringData` (tests/deploy/test_manifests.py holds them equal)."""
    return {
        "asya-broker": {"url": broker_url},
        "asya-gateway-db": {"url": "sqlite:////var/lib/asya/gateway.db"},
        "asya-gateway-auth": {
            "api-keys": f"client:{client_key}",
            "mesh-token": "deploy-test-mesh-token",
        },
    }


def podman_secret(podman: str, name: str, values: dict[str, str]) -> None:
    """A podman secret that secretKeyRef reads: JSON of base64 values (a Secret's `data`)."""
    subprocess.run([podman, "secret", "rm", name], capture_output=True, check=False)
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    tmp = CACHE / f"secret-{name}-{os.getpid()}.json"
    tmp.write_text(json.dumps(data))
    try:
        sh(podman, "secret", "create", name, str(tmp))
    finally:
        tmp.unlink()


def write_yaml(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def pod_logs(podman: str, deployment_names: Iterable[str]) -> str:
    """Every container's last log lines, for a failure message."""
    out = []
    names = sh(podman, "ps", "-a", "--format", "{{.Names}}", check=False).split()
    for n in names:
        if any(n.startswith(f"{d}-pod-") for d in deployment_names):
            logs = subprocess.run(
                [podman, "logs", "--tail", "30", n], capture_output=True, text=True, check=False
            )
            out.append(f"--- {n}\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def _pod_names(path: Path) -> tuple[list[str], list[str]]:
    """The pods and containers `podman kube play` names for a file's Deployments."""
    pods, containers = [], []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment":
            pod = f"{doc['metadata']['name']}-pod-0"
            pods.append(pod)
            spec = doc["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                containers.append(f"{pod}-{c['name']}")
    return pods, containers


def free_names(podman: str, path: Path) -> None:
    """Remove whatever holds the names a play of `path` takes: its earlier pods, and containers
    podman left in storage only (a play killed mid-way leaves one: the next play then fails
    with "the container name ... is already in use", seen in CI)."""
    pods, containers = _pod_names(path)
    sh(podman, "kube", "down", str(path), check=False, timeout=120)
    sh(podman, "pod", "rm", "-f", "--ignore", *pods, check=False, timeout=120)
    sh(podman, "rm", "-f", "--ignore", *containers, check=False, timeout=120)
    for name in containers:
        sh(podman, "rm", "--storage", name, check=False, timeout=60)


def play(podman: str, path: Path, attempts: int = 3, timeout: float = 120) -> None:
    """`podman kube play --network host`, on free names, retried: podman 4.3 has been seen to
    hang in a play (its pod stuck in "Created" for 600 s, CI) and to trip on names a killed
    play left behind; both are podman's, before any of our code runs. A play takes < 1 s."""
    failures: list[str] = []
    for _ in range(attempts):
        try:
            free_names(podman, path)
            sh(podman, "kube", "play", "--network", "host", str(path), timeout=timeout)
            return
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            failures.append(str(exc))
            print(f"kube play failed, retrying on freed names: {exc}")  # shown on failure
    raise AssertionError(f"kube play of {path} failed {attempts} times:\n" + "\n".join(failures))
