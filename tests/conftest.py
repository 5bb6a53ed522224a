"""Shared fixtures: the anyio backend and short socket directories."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def anyio_backend() -> str:
    # aio-pika, aiobotocore and uvicorn are asyncio-only; the sans-IO core imports no backend.
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths must stay under ~100 bytes."""
    d = tempfile.mkdtemp(prefix="asya-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        # ASYA_KEEP_TMP=1 keeps the logs of a failed run for reading.
        if not os.environ.get("ASYA_KEEP_TMP"):
            shutil.rmtree(d, ignore_errors=True)


def console_script(name: str) -> str:
    """Path of one of our console scripts in the running interpreter's environment."""
    p = VENV_BIN / name
    return str(p) if p.exists() else name


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes: ours, with the repo importable (for examples.*)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
