"""The page in headless Chromium against a gateway with keys: it asks for the key once, keeps it
for the tab, and streams the task with it (fetch-read SSE: EventSource cannot send headers)."""

from __future__ import annotations

import time

import httpx
import pytest

from .helpers import MESH, threaded_gateway

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def _wait(cond: object, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_page_asks_for_the_key_once_and_streams_with_it(page: object) -> None:
    from playwright.sync_api import Dialog, Page

    assert isinstance(page, Page)
    prompts: list[str] = []

    def answer(d: Dialog) -> None:
        prompts.append(d.message)
        d.accept("key-alice-0123456789")

    page.on("dialog", answer)
    with threaded_gateway() as url, httpx.Client(timeout=10) as c:
        page.goto(url + "/?route=a")
        for n in (1, 2):
            page.fill("#prompt", f"hello {n}")
            page.click("#submit")
            _wait(lambda: page.inner_text("#task-id").strip() not in ("", "—"), "the task id")
            tid = page.inner_text("#task-id").strip()
            # As the sidecar would: tokens, then the result (with the mesh token).
            for text in ("Hel", "lo"):
                fly = {"type": "fly", "data": {"partial": True, "text": text}}
                assert c.post(f"{url}/api/v1/mesh/{tid}/events", json=fly, headers=MESH).is_success
            _wait(lambda: page.inner_text("#tokens") == "Hello", "the streamed tokens")
            done = {"type": "status", "status": "succeeded", "data": {"result": {"n": n}}}
            assert c.post(f"{url}/api/v1/mesh/{tid}/events", json=done, headers=MESH).is_success
            _wait(lambda: page.inner_text("#status") == "succeeded", "the final status")
            assert '"n": ' + str(n) in page.inner_text("#result")
            page.evaluate("document.getElementById('task-id').textContent = ''")
        assert len(prompts) == 1 and "API key" in prompts[0]  # asked once, for the tab
        assert page.evaluate("sessionStorage.getItem('asya-api-key')") == "key-alice-0123456789"
