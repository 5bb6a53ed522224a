"""The web page in headless Chromium: submit a prompt, watch the token text grow, see the end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .test_mesh_e2e import mesh  # noqa: F401  # the `asya dev` fixture

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]


def test_page_streams_tokens_and_shows_the_final_status(
    mesh: tuple[str, object, str],  # noqa: F811
    page: object,
) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    url = mesh[0]
    page.goto(url + "/?route=tokens")
    assert page.input_value("#route") == "tokens"
    page.fill("#prompt", "hello from the browser")
    page.click("#submit")
    lengths: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = page.inner_text("#tokens")
        if not lengths or len(text) != lengths[-1]:
            lengths.append(len(text))
        if page.inner_text("#status") == "succeeded":
            break
        page.wait_for_timeout(40)
    assert page.inner_text("#status") == "succeeded"
    final = page.inner_text("#tokens")
    assert final.startswith("You asked: hello from the browser.")
    assert len(set(lengths)) >= 5, lengths  # the text grew in steps, not all at once
    assert lengths == sorted(lengths)
    assert "hello from the browser" in page.inner_text("#result")
    assert page.inner_text("#task-percent") == "100%"
    shot = Path(os.environ.get("ASYA_SCREENSHOT", "/tmp/asya-gateway-page.png"))
    page.screenshot(path=str(shot), full_page=True)
    # A failing handler: the page shows `failed` and the error, and no stale result.
    page.fill("#route", "bad")
    page.click("#submit")
    page.wait_for_function(
        "document.getElementById('status').textContent === 'failed'", timeout=30_000
    )
    assert page.is_visible("#error") and page.inner_text("#error").strip()
    assert not page.is_visible("#result-box") and page.inner_text("#tokens") == ""
