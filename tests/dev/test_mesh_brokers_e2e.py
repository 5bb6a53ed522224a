"""`asya dev --transport rabbitmq|sqs`: the whole local mesh on a real broker."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.brokers import RABBITMQ_URL, SQS_ENDPOINT_URL, require_broker

from ..conftest import console_script
from .test_mesh_e2e import free_port, wait_gone

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.timeout(150)]

BROKER_ENV = {
    "rabbitmq": {"ASYA_RABBITMQ_URL": RABBITMQ_URL},
    "sqs": {
        "ASYA_SQS_ENDPOINT": SQS_ENDPOINT_URL,
        "ASYA_SQS_WAIT_TIME_SECONDS": "1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    },
}


@pytest.mark.parametrize("transport", sorted(BROKER_ENV))
def test_asya_dev_prompt_on_a_broker(
    transport: str, short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    require_broker(transport)
    workdir = str(short_tmp / "dev")
    # Its own exchange: RabbitMQ routing keys are bare actor names (upstream's scheme), so a
    # shared exchange would let another run's queues see these envelopes.
    env = subprocess_env | BROKER_ENV[transport]
    env["ASYA_RABBITMQ_EXCHANGE"] = f"asya-dev-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(
        [
            console_script("asya"),
            "dev",
            "--transport",
            transport,
            "--route",
            "tokens",
            "--prompt",
            f"hello over {transport}",
            "--port",
            str(free_port()),
            "--dir",
            workdir,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr[-3000:]
        assert f"You asked: hello over {transport}. Actors stream tokens" in out
        assert "✔ succeeded" in out
        # Nothing went through the embedded queue: it was never even created.
        assert not list(Path(workdir).glob("queues.db*"))
    finally:
        assert wait_gone(workdir) == []
