"""Shared fixtures (anyio backend, short socket dirs, headless Chromium); hypothesis settings."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Examples are judged by what they produce, not how fast: on a loaded 2-core CI machine one
# slow example made a property test fail as "Flaky" (DeadlineExceeded once, not on the re-run).
settings.register_profile("asya", deadline=None)
settings.load_profile("asya")

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`.ci/run` installs it); Playwright drives it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


@pytest.fixture
def page() -> Iterator[object]:
    """A fresh page in headless Chromium (skipped without Chromium; `CI` makes no difference:
    `.ci/run` installs it)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
