"""`asya-sidecar run` with no runtime beside it says what it waits for (the socket path) at
INFO, again at intervals, and /health answers 503 "not ready: ..." until it is connected."""

from __future__ import annotations

import json

import anyio
import pytest

from asya_sidecar.runner import WAITING_LOG_EVERY

from .harness import TIMEOUT, Mesh, envelope, free_port, wait_for, wait_for_health

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def waiting_lines(mesh: Mesh) -> list[dict[str, object]]:
    out = []
    for line in mesh.log("sidecar-late").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "waiting for the runtime":
            out.append(rec)
    return out


async def test_waiting_for_the_runtime_is_said_and_health_is_not_ready(mesh: Mesh) -> None:
    with anyio.fail_after(TIMEOUT + WAITING_LOG_EVERY):
        port = free_port()
        sock = str(mesh.socket_dir("late") / "asya-runtime.sock")
        mesh.sidecar("late", ASYA_METRICS_ADDR=f"127.0.0.1:{port}")
        first = await wait_for(lambda: waiting_lines(mesh), what="the waiting line")
        assert first[0]["socket"] == sock and first[0]["level"] == "info"
        text = await wait_for_health(port, 503, "not ready")
        assert text == f"not ready: waiting for the runtime at {sock}"
        # Said again while it still waits.
        await wait_for(
            lambda: len(waiting_lines(mesh)) >= 2,
            what="the waiting line repeated",
            within=WAITING_LOG_EVERY + 5,
        )
        mesh.runtime("late", "examples.handlers.util:echo")
        assert await wait_for_health(port, 200, "ok") == "ok"
        await mesh.send("late", envelope("r-1", ["late"], 1))
        assert (await mesh.take("x-sink"))["id"] == "r-1"
