"""Where the test brokers are, and the one rule for tests that need them."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

RABBITMQ_URL = os.environ.get("RABBITMQ_URL") or os.environ.get(
    "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
SQS_ENDPOINT_URL = os.environ.get("SQS_ENDPOINT_URL", "http://127.0.0.1:5000")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_broker(kind: str) -> None:
    """Skip locally, fail loudly under CI, when the broker for `kind` is not running."""
    if kind == "rabbitmq":
        ok, where = _reachable(RABBITMQ_URL, 5672), RABBITMQ_URL
    elif kind == "sqs":
        ok, where = _reachable(SQS_ENDPOINT_URL, 80), SQS_ENDPOINT_URL
    else:
        return
    if ok:
        return
    reason = f"{kind} broker not reachable at {where} (start it: bash scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
