"""Runtime test fixtures: start `asya-runtime run` as a subprocess in a short temp dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .wire_client import RuntimeProcess


@pytest.fixture
def runtime(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> Iterator[Callable[..., RuntimeProcess]]:
    started: list[RuntimeProcess] = []

    def start(spec: str, *args: str, name: str = "rt.sock") -> RuntimeProcess:
        p = RuntimeProcess(spec, short_tmp / name, subprocess_env, *args)
        started.append(p)
        return p.wait_ready()

    yield start
    for p in started:
        p.stop()
