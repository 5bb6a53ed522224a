"""Fixtures of the fault suite: process meshes, transports (with broker checks), recorders."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asya_mesh.transports import TransportConfig
from tests.brokers import RABBITMQ_URL, SQS_ENDPOINT_URL, require_broker

from ..conftest import ROOT
from .knobs import SEED
from .procs import Mesh
from .results import Recorder


@dataclass(frozen=True)
class TransportEnv:
    """One transport, isolated by its namespace: env for child processes + config for the test."""

    kind: str
    env: dict[str, str]
    config: TransportConfig


def transport_env(kind: str, root: Path) -> TransportEnv:
    namespace = f"f{uuid.uuid4().hex[:10]}"
    env = {"ASYA_TRANSPORT": kind, "ASYA_NAMESPACE": namespace}
    cfg: dict[str, Any] = {"kind": kind, "namespace": namespace}
    if kind == "sqlite":
        env["ASYA_SQLITE_PATH"] = cfg["sqlite_path"] = str(root / "queues.db")
    elif kind == "rabbitmq":
        require_broker(kind)
        env["ASYA_RABBITMQ_URL"] = cfg["rabbitmq_url"] = RABBITMQ_URL
        # Our own exchange: routing keys are the actor names without the namespace (upstream's
        # scheme), so two namespaces sharing an exchange receive each other's messages.
        env["ASYA_RABBITMQ_EXCHANGE"] = cfg["rabbitmq_exchange"] = f"asya-{namespace}"
    elif kind == "sqs":
        require_broker(kind)
        env["ASYA_SQS_ENDPOINT"] = cfg["sqs_endpoint"] = SQS_ENDPOINT_URL
        env.update(
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            AWS_DEFAULT_REGION="us-east-1",
        )
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        cfg["sqs_visibility_timeout"] = 30.0
    return TransportEnv(kind, env, TransportConfig(**cfg))


@pytest.fixture(scope="module")
def short_tmp_module() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="asya-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def subprocess_env_module() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@pytest.fixture
def mesh(short_tmp: Path, subprocess_env: dict[str, str]) -> Iterator[Mesh]:
    env = {**subprocess_env, "ASYA_FAULT_TRACE": str(short_tmp / "trace")}
    m = Mesh(short_tmp, env)
    try:
        yield m
    finally:
        m.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


_PASSED = pytest.StashKey[bool]()


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    rec = Recorder(request.node.nodeid)
    try:
        yield rec
    finally:
        rec.save(request.node.stash.get(_PASSED, False))


@pytest.fixture(scope="session")
def fault_seed() -> int:
    print(f"\nfault suite seed: ASYA_FAULT_SEED={SEED}")
    return SEED
