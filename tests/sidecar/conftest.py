"""Fixtures for the sidecar tests: a `Mesh` of real processes, torn down after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import Mesh


@pytest.fixture
async def mesh(short_tmp: Path, subprocess_env: dict[str, str]) -> AsyncIterator[Mesh]:
    m = Mesh(short_tmp, subprocess_env)
    try:
        yield m
    finally:
        await m.aclose()
        # Shown by pytest only when the test failed.
        for log in sorted(short_tmp.glob("*.log")):  # noqa: ASYNC240 - teardown only
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")
