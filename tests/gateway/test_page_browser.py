"""The web page in headless Chromium over `asya dev`: a refused create shows its error (not
"submitting" forever), a typo in a later hop shows the failed task's error, and a running task
can be canceled from the page."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import console_script
from tests.dev.test_mesh_e2e import free_port, processes_mentioning

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture
def dev(short_tmp: Path, subprocess_env: dict[str, str]) -> Iterator[str]:
    """`asya dev` with a handler that hangs until cancelled: the gateway's URL once ready."""
    port, workdir = free_port(), str(short_tmp / "dev")
    proc = subprocess.Popen(
        [
            console_script("asya"),
            "dev",
            "--route",
            "tokens,hang",
            "--actor",
            "hang=examples.handlers.util:hang",
            "--port",
            str(port),
            "--dir",
            workdir,
        ],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # `asya dev` says "open http://…" once every sidecar is ready
            if "open http://" in line:
                break
        else:
            pytest.fail(f"asya dev ended before the mesh was ready (code {proc.wait()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in processes_mentioning(workdir):
            os.kill(pid, signal.SIGKILL)


def status_is(page: object, status: str) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.wait_for_function(
        f"document.getElementById('status').textContent === {status!r}", timeout=30_000
    )


def test_page_shows_refusals_and_failures_and_cancels_a_running_task(
    dev: str, page: object
) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(dev + "/")

    # An unknown first actor: refused at create, the page says why and is usable again.
    page.fill("#route", "nobody")
    page.click("#submit")
    status_is(page, "refused")
    error = page.inner_text("#error")
    assert "'nobody'" in error and "'asya-dev-nobody'" in error, error
    assert page.is_enabled("#submit") and not page.is_visible("#cancel")

    # A typo in a later hop: the task fails within seconds, with the reason.
    page.fill("#route", "tokens,tokns")
    page.click("#submit")
    status_is(page, "failed")
    error = page.inner_text("#error")
    assert "'tokns'" in error and "'asya-dev-tokns'" in error, error
    assert not page.is_visible("#cancel")

    # A running task: the page offers to cancel it, and cancelling ends it.
    page.fill("#route", "hang")
    page.click("#submit")
    status_is(page, "running")
    assert page.is_visible("#cancel")
    page.click("#cancel")
    status_is(page, "canceled")
    assert not page.is_visible("#cancel") and page.is_enabled("#submit")
    page.screenshot(path=os.environ.get("ASYA_SCREENSHOT_CANCEL", "/tmp/asya-page-cancel.png"))
