"""The sidecar on the real brokers (RabbitMQ, SQS via moto): routing and a delayed retry."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.brokers import RABBITMQ_URL, SQS_ENDPOINT_URL, require_broker

from .harness import TIMEOUT, Mesh, envelope

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.broker]

BROKERS = {
    "rabbitmq": {
        "ASYA_TRANSPORT": "rabbitmq",
        "ASYA_RABBITMQ_URL": RABBITMQ_URL,
    },
    "sqs": {
        "ASYA_TRANSPORT": "sqs",
        "ASYA_SQS_ENDPOINT": SQS_ENDPOINT_URL,
        "ASYA_AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "ASYA_SQS_WAIT_TIME_SECONDS": "1",
    },
}


@pytest.fixture(params=sorted(BROKERS))
async def broker_mesh(
    request: pytest.FixtureRequest,
    short_tmp: Path,
    subprocess_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Mesh]:
    env = BROKERS[request.param]
    for k, v in env.items():
        if k.startswith("AWS_"):  # botocore in this process reads them from os.environ
            monkeypatch.setenv(k, v)
    require_broker(request.param)  # skips locally, fails under CI
    m = Mesh(short_tmp, subprocess_env | env, **env)
    try:
        yield m
    finally:
        await m.aclose()
        for log in sorted(short_tmp.glob("*.log")):  # noqa: ASYNC240 - teardown only
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")


async def test_pipeline_and_delayed_retry_on_broker(broker_mesh: Mesh) -> None:
    mesh = broker_mesh
    policy = json.dumps({"default": {"maxAttempts": 2, "initialDelay": "1s"}})
    with anyio.fail_after(TIMEOUT * 2):
        # (No receive on an actor's queue from here: a broker consumer would prefetch its
        # messages. Sends declare their destination queues.)
        mesh.runtime("a", "examples.handlers.util:echo")
        mesh.sidecar("a")
        mesh.runtime("boom", "examples.handlers.failing:explode")
        mesh.sidecar("boom", ASYA_RESILIENCY_POLICIES=policy)
        await mesh.send("a", envelope("r-1", ["a"], {"v": 1}))
        out = await mesh.take("x-sink", within=30)
        assert out["id"] == "r-1" and out["status"]["phase"] == "succeeded"
        t0 = time.monotonic()
        await mesh.send("boom", envelope("r-2", ["boom"], {"message": "x"}))
        out = await mesh.take("x-sink", within=30)
        assert out["status"]["reason"] == "PolicyExhausted" and out["status"]["attempt"] == 2
        assert time.monotonic() - t0 >= 0.9  # the retry delay was applied by the broker
