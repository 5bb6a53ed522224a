"""deploy/k8s against the Kubernetes schemas (offline), and the rules an actor pod must keep."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from asya_dev.image import HANDLER_CONTAINERFILE
from asya_runtime.durations import parse_duration

from .kube import K8S, ROOT, load_docs, secret_values

FILES = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
VERSION = kubernetes_validate.latest_version()


def _all() -> list[dict[str, Any]]:
    return load_docs(*FILES)


def _deployment(name: str) -> dict[str, Any]:
    return next(d for d in _all() if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _container(dep: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


@pytest.mark.parametrize("name", FILES)
def test_every_document_matches_the_kubernetes_schema(name: str) -> None:
    for doc in load_docs(name):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_validator_refuses_a_wrong_manifest() -> None:
    bad = _deployment("tokens")
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_maps_every_image() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == FILES
    used = {
        c["image"].split(":")[0]
        for d in _all()
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert used == {i["name"] for i in kust["images"]}


def test_actor_pod_shares_the_socket_volume_and_outlives_both_drains() -> None:
    dep = _deployment("tokens")
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "asya-socket", "emptyDir": {}} in pod["volumes"]
    runtime, sidecar = _container(dep, "runtime"), _container(dep, "sidecar")
    for c in (runtime, sidecar):
        assert {"name": "asya-socket", "mountPath": "/var/run/asya"} in c["volumeMounts"]
        assert _env(c)["ASYA_SOCKET_DIR"] == "/var/run/asya"
    assert runtime["readinessProbe"]["exec"]["command"] == [
        "test",
        "-e",
        "/var/run/asya/runtime-ready",
    ]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/health"
    assert sidecar["readinessProbe"]["httpGet"]["port"] == 8080
    assert _env(sidecar)["ASYA_METRICS_ADDR"] == ":8080"
    runtime_grace = parse_duration(_env(runtime)["ASYA_RUNTIME_SHUTDOWN_GRACE"])
    sidecar_grace = parse_duration(_env(sidecar)["ASYA_SHUTDOWN_GRACE"])
    # An invocation cut off by the runtime exiting first would go to x-sump as "runtime lost".
    assert runtime_grace >= sidecar_grace
    assert pod["terminationGracePeriodSeconds"] > max(runtime_grace, sidecar_grace)
    assert int(_env(sidecar)["ASYA_CONCURRENCY"]) <= int(_env(runtime)["ASYA_RUNTIME_CONCURRENCY"])
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "8080"
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("actor", ["x-sink", "x-sump"])
def test_end_actors_run_the_sidecar_alone_in_end_mode(actor: str) -> None:
    dep = _deployment(actor)
    (sidecar,) = dep["spec"]["template"]["spec"]["containers"]
    assert sidecar["args"] == ["run", "--end"]
    assert sidecar["image"].startswith("asya-sidecar:")
    env = _env(sidecar)
    assert env["ASYA_ACTOR_NAME"] == actor
    grace = parse_duration(env["ASYA_SHUTDOWN_GRACE"])
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_broker_and_database_come_from_secrets_and_flows_from_a_configmap() -> None:
    docs = _all()
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = _env(c)
            if "ASYA_TRANSPORT" in env:
                ref = env["ASYA_RABBITMQ_URL"]["secretKeyRef"]
                assert ref["name"] == "asya-broker" and ref["name"] in secrets
    gw = _deployment("asya-gateway")
    env = _env(_container(gw, "gateway"))
    assert env["ASYA_GATEWAY_DATABASE_URL"]["secretKeyRef"]["name"] in secrets
    flows_cm = next(d for d in docs if d["kind"] == "ConfigMap")
    mount = next(m for m in _container(gw, "gateway")["volumeMounts"] if m["name"] == "flows")
    assert env["ASYA_GATEWAY_FLOWS"] == f"{mount['mountPath']}/flows.json"
    assert "flows.json" in flows_cm["data"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == gw["spec"]["selector"]["matchLabels"]
    assert env["ASYA_GATEWAY_PUBLIC_URL"].startswith(f"http://{service['metadata']['name']}:")


def test_the_kube_play_secrets_carry_exactly_the_shipped_secret_keys() -> None:
    """test_kube_play.py creates the Secrets itself (podman 4.3 cannot read played ones): with
    the keys the manifests declare, no fewer (a pod would not start) and no others."""
    shipped = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in load_docs("broker.yaml", "gateway.yaml")
        if d["kind"] == "Secret"
    }
    created = {name: set(values) for name, values in secret_values("amqp://x", "k").items()}
    assert created == shipped
    for d in _all():
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for value in _env(c).values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    ref = value["secretKeyRef"]
                    assert ref["key"] in shipped.get(ref["name"], set()), (c["name"], ref)


def test_the_flows_configmap_is_a_valid_flows_file() -> None:
    from asya_gateway.flows import parse_flows

    cm = next(d for d in _all() if d["kind"] == "ConfigMap")
    flows = parse_flows(cm["data"]["flows.json"].encode())
    assert [f.route for f in flows] == [["tokens"]]


CONTAINERFILES = sorted((ROOT / "deploy").glob("Containerfile.*"))


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_containerfiles_run_as_a_non_root_user_with_no_compiler(path: Path) -> None:
    text = path.read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", text)
    if path.name != "Containerfile.handler":
        assert "ARG BASE=python:3.11-slim" in text
        assert "--no-index --find-links /wheels" in text


def test_handler_containerfile_is_what_asya_image_build_writes() -> None:
    assert (ROOT / "deploy" / "Containerfile.handler").read_text() == HANDLER_CONTAINERFILE
