"""Unknown actors with real processes (gateway, sidecars, runtime) on SQLite and RabbitMQ: a
create whose first actor has no queue is refused with 400; a typo in a later hop fails the task
within seconds with a reason naming the actor and its queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.brokers import RABBITMQ_URL, require_broker
from tests.conftest import console_script

from .harness import Mesh, free_port, wait_for_health

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]

TRANSPORTS: dict[str, dict[str, str]] = {
    "sqlite": {},
    "rabbitmq": {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": RABBITMQ_URL},
}


@pytest.fixture(params=sorted(TRANSPORTS))
async def any_mesh(
    request: pytest.FixtureRequest, short_tmp: Path, subprocess_env: dict[str, str]
) -> AsyncIterator[Mesh]:
    env = TRANSPORTS[request.param]
    if env:
        require_broker(request.param)  # skips locally, fails under CI
    m = Mesh(short_tmp, subprocess_env | env, **env)
    try:
        yield m
    finally:
        await m.aclose()
        for log in sorted(short_tmp.glob("*.log")):  # noqa: ASYNC240 - teardown only
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")


async def gateway(mesh: Mesh) -> str:
    """`asya-gateway run` on the mesh's queues (its store beside the embedded queue file)."""
    port = free_port()
    mesh._spawn(
        [console_script("asya-gateway"), "run", "--port", str(port)], mesh.env, "gateway.log"
    )
    await wait_for_health(port, 200, "", within=30)
    return f"http://127.0.0.1:{port}"


async def until_terminal(c: httpx.AsyncClient, url: str, *, within: float) -> dict[str, Any]:
    """Poll the task (another process settles it) until terminal, within `within` seconds."""
    with anyio.fail_after(within):
        while True:
            task: dict[str, Any] = (await c.get(url)).json()
            if task["status"] in ("succeeded", "failed", "canceled"):
                return task
            await anyio.sleep(0.05)


async def test_unknown_first_actor_is_refused_and_a_typo_later_fails_the_task(
    any_mesh: Mesh,
) -> None:
    mesh = any_mesh
    with anyio.fail_after(90):
        base = await gateway(mesh)
        mesh.runtime("echo", "examples.handlers.util:echo")
        mesh.sidecar("echo")
        mesh.sidecar("x-sink", end=True)
        mesh.sidecar("x-sump", end=True)
        await mesh.wait_declared()
        async with httpx.AsyncClient(timeout=10) as c:
            # The first actor has no queue: refused at once, nothing created.
            r = await c.post(f"{base}/api/v1/mesh", json={"route": ["nobody"], "payload": {}})
            assert r.status_code == 400, r.text
            assert "'nobody'" in r.text and f"'{mesh.q('nobody')}'" in r.text

            # A typo in a later hop: accepted, then failed within seconds, naming it.
            r = await c.post(
                f"{base}/api/v1/mesh", json={"route": ["echo", "ecko"], "payload": {"x": 1}}
            )
            assert r.status_code == 201, r.text
            t0 = time.monotonic()
            task = await until_terminal(c, f"{base}/api/v1/mesh/{r.json()['id']}", within=30)
            assert task["status"] == "failed", task
            message = str(task.get("error"))
            assert "'ecko'" in message and f"'{mesh.q('ecko')}'" in message, task
            assert time.monotonic() - t0 < 10  # at once, not at some deadline

            # The known route still works on the same mesh.
            r = await c.post(f"{base}/api/v1/mesh", json={"route": ["echo"], "payload": {"y": 2}})
            assert r.status_code == 201, r.text
            done = await until_terminal(c, f"{base}/api/v1/mesh/{r.json()['id']}", within=30)
            assert done["status"] == "succeeded", done
