"""Fixtures for the transport conformance suite: one `Transport` factory per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from asya_mesh.transports import Transport, TransportConfig, open_transport
from asya_mesh.transports.memory import MemoryQueues, MemoryTransport
from tests.brokers import RABBITMQ_URL, SQS_ENDPOINT_URL, require_broker

NAMESPACE = "conformance"
ROOT_DIR = Path(__file__).resolve().parents[2]

OpenTransport = Callable[..., Awaitable[Transport]]


def config_for(kind: str, sqlite_path: Path, **overrides: Any) -> TransportConfig:
    """A config for `kind` reaching the local test brokers; `lease_seconds` also sets SQS's."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    fields: dict[str, Any] = {
        "kind": kind,
        "namespace": NAMESPACE,
        "sqlite_path": str(sqlite_path),
        "rabbitmq_url": RABBITMQ_URL,
        "sqs_endpoint": SQS_ENDPOINT_URL,
        "sqs_wait_time_seconds": 1,
    }
    fields.update(overrides)
    if "lease_seconds" in overrides:
        fields["sqs_visibility_timeout"] = overrides["lease_seconds"]
    return TransportConfig(**fields)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("rabbitmq", marks=pytest.mark.broker),
        pytest.param("sqs", marks=pytest.mark.broker),
    ]
)
def kind(request: pytest.FixtureRequest) -> str:
    require_broker(request.param)
    return str(request.param)


@pytest.fixture
def queue() -> str:
    """A fresh queue per test, so tests never see each other's messages."""
    return f"asya-{NAMESPACE}-t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_path(short_tmp: Path) -> Path:
    return short_tmp / "queues.db"


@pytest.fixture
async def open_one(kind: str, sqlite_path: Path) -> AsyncIterator[OpenTransport]:
    """`await open_one(**config_overrides)`: a transport closed at teardown."""
    opened: list[Transport] = []
    shared = MemoryQueues()  # memory: every transport of a test is a connection to one broker

    async def factory(**overrides: Any) -> Transport:
        if kind == "memory":
            t: Transport = MemoryTransport(shared, **overrides)
        else:
            t = await open_transport(config_for(kind, sqlite_path, **overrides), concurrency=8)
        opened.append(t)
        return t

    try:
        yield factory
    finally:
        for t in reversed(opened):
            await t.aclose()


@pytest.fixture
async def transport(open_one: OpenTransport) -> Transport:
    return await open_one()
