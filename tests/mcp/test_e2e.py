"""End to end: the official MCP client against a real `asya dev` mesh (gateway, runtimes,
sidecars, x-sink, x-sump as processes), through the MCP door.

Two ways in, same tests:
- `gateway`: the door mounted in the gateway (`asya dev --flows FILE`, `POST {gateway}/mcp`);
  skipped until the integration lands `create_app(..., flows=)` and `asya dev --flows`.
- `bridge`: until then, the door served by this test process over `RestTaskService`, which
  drives the same mesh through the gateway's REST + SSE API (real HTTP all the way).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from asya_gateway.flows import Flows, parse_flows
from asya_gateway.mcp import TASK_ID_META, mcp_app

from ..conftest import ROOT, console_script
from ..dev.test_mesh_e2e import free_port, processes_mentioning
from .conftest import REVISIONS, integrated_create_app, open_session, serve
from .restservice import RestTaskService

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(180)]

FLOWS_DOC: dict[str, Any] = {
    "flows": [
        {
            "name": "tokens",
            "description": "Answer a prompt, streaming tokens",
            "route": ["tokens"],
            "input_schema": {
                "type": "object",
                "properties": {
                    "prompt": {"type": "string"},
                    "token_delay": {"type": "number", "minimum": 0},
                },
                "required": ["prompt"],
            },
        },
        {"name": "bad", "route": ["bad"]},
        {"name": "hang", "route": ["hanger"], "timeout": 120},
        {"name": "slow", "route": ["hanger"], "timeout": 3},
    ]
}
FLOWS: Flows = parse_flows(json.dumps(FLOWS_DOC).encode())


def _dev_takes_flows() -> bool:
    out = subprocess.run(
        [console_script("asya"), "dev", "--help"], capture_output=True, text=True, check=False
    )
    return "--flows" in out.stdout


@dataclass
class MeshProc:
    url: str  # the gateway
    workdir: str
    flows_file: str | None


@pytest.fixture(scope="module", params=["gateway", "bridge"])
def mesh(request: pytest.FixtureRequest) -> Iterator[MeshProc]:
    """One `asya dev` mesh per module and way in (starting one costs seconds)."""
    integrated = request.param == "gateway"
    mounted = integrated_create_app() is not None and _dev_takes_flows()
    if integrated and not mounted:
        pytest.skip("the door is not mounted in the gateway yet (create_app flows=, dev --flows)")
    if not integrated and mounted:
        pytest.skip("the door is mounted in the gateway: the bridge adds nothing")
    tmp = tempfile.mkdtemp(prefix="asya-mcp-", dir="/tmp")
    workdir = str(Path(tmp) / "dev")
    port = free_port()
    args = [
        console_script("asya"),
        "dev",
        "--route",
        "tokens,bad,hanger",
        "--actor",
        "bad=examples.handlers.failing:explode",
        "--actor",
        "hanger=tests.mcp.handlers:fly_then_hang",
        "--port",
        str(port),
        "--dir",
        workdir,
    ]
    flows_file = None
    if integrated:
        flows_file = str(Path(tmp) / "flows.json")
        Path(flows_file).write_text(json.dumps(FLOWS_DOC))
        args += ["--flows", flows_file]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "open http://" in line:
                break
        else:
            pytest.fail(f"asya dev ended before the mesh was ready (code {proc.wait()})")
        yield MeshProc(f"http://127.0.0.1:{port}", workdir, flows_file)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in processes_mentioning(workdir):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", tmp], check=False)


@dataclass
class Way:
    mcp_url: str  # base URL whose /mcp is the door
    gateway_url: str
    bridge: RestTaskService | None


@pytest.fixture
async def way(mesh: MeshProc) -> AsyncIterator[Way]:
    if mesh.flows_file is not None:
        yield Way(mesh.url, mesh.url, None)
        return
    svc = RestTaskService(mesh.url)
    try:
        async with serve(mcp_app(svc, FLOWS).starlette()) as url:
            yield Way(url, mesh.url, svc)
    finally:
        await svc.aclose()


async def task_status(way: Way, task_id: str) -> str:
    async with httpx.AsyncClient(base_url=way.gateway_url, timeout=10) as c:
        return str((await c.get(f"/api/v1/mesh/{task_id}")).json()["status"])


async def tasks_known(way: Way) -> int:
    """The gateway's count of the tasks it tracks (`GET /api/v1/stats`): one more per create."""
    async with httpx.AsyncClient(base_url=way.gateway_url, timeout=10) as c:
        r = await c.get("/api/v1/stats")
        r.raise_for_status()
        return int(r.json()["tasks"])


@pytest.mark.parametrize("revision", REVISIONS)
async def test_tools_progress_results_and_refusals(way: Way, revision: str) -> None:
    progress: list[tuple[float, str | None, float]] = []
    notes: list[types.ProgressNotificationParams] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, message, time.monotonic()))

    async def on_message(m: Any) -> None:
        if isinstance(m, types.ProgressNotification):
            notes.append(m.params)

    with anyio.fail_after(90):
        async with open_session(way.mcp_url, revision, message_handler=on_message) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) >= {"tokens", "bad", "hang", "slow"}
            assert tools["tokens"].input_schema["required"] == ["prompt"]

            start = time.monotonic()
            args = {"prompt": "why", "token_delay": 0.05}
            result = await s.call_tool("tokens", args, progress_callback=on_progress)
            end = time.monotonic()
            assert not result.is_error, result
            text = result.content[0].text  # type: ignore[union-attr]
            assert isinstance(result.structured_content, dict)
            assert text == result.structured_content["text"] and text.startswith("You asked: why.")
            assert len(progress) > 20
            assert [p for p, _, _ in progress] == list(range(1, len(progress) + 1))
            assert "".join(m or "" for _, m, _ in progress) == text
            # Live: the first token arrives long before the result, not in one burst at the end.
            assert progress[0][2] - start < 0.5 * (end - start), (
                progress[0][2] - start,
                end - start,
            )
            assert result.meta is not None
            task_id = result.meta[TASK_ID_META]
            assert {n.meta[TASK_ID_META] for n in notes if n.meta} == {task_id}
            assert await task_status(way, task_id) == "succeeded"

            # No progress token: no notifications, the same result.
            progress.clear()
            notes.clear()
            quiet = await s.call_tool("tokens", {"prompt": "why", "token_delay": 0})
            assert not quiet.is_error and notes == [] and progress == []
            assert quiet.content[0].text.startswith("You asked: why.")  # type: ignore[union-attr]

            known = await tasks_known(way)
            failed = await s.call_tool("bad", {"message": "the model is on fire"})
            assert failed.is_error
            assert "the model is on fire" in failed.content[0].text  # type: ignore[union-attr]
            assert failed.meta is not None
            assert await task_status(way, failed.meta[TASK_ID_META]) == "failed"
            assert await tasks_known(way) == known + 1  # the gateway counts each task created

            before = len(way.bridge.created) if way.bridge else 0
            known = await tasks_known(way)
            refused = await s.call_tool("tokens", {"prompt": 7})
            assert refused.is_error and TASK_ID_META not in (
                refused.meta or {}
            )  # no task behind it
            assert "`prompt`: 7 is not of type 'string'" in refused.content[0].text  # type: ignore[union-attr]
            # Refused before any envelope: the real mesh's gateway created no task for it.
            assert await tasks_known(way) == known
            if way.bridge:
                assert len(way.bridge.created) == before

            with pytest.raises(MCPError) as err:
                await s.call_tool("no-such-flow", {})
            assert err.value.code == types.INVALID_PARAMS and "'no-such-flow'" in err.value.message


@pytest.mark.parametrize("revision", REVISIONS)
async def test_cancelled_call_cancels_the_task_and_its_handler(way: Way, revision: str) -> None:
    marker = Path(tempfile.mkdtemp(prefix="asya-mcp-m-", dir="/tmp")) / "finally"
    task_ids: list[str] = []
    started = anyio.Event()

    async def on_message(m: Any) -> None:
        if isinstance(m, types.ProgressNotification) and m.params.meta:
            task_ids.append(m.params.meta[TASK_ID_META])
            started.set()

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        pass

    with anyio.fail_after(90):
        async with open_session(way.mcp_url, revision, message_handler=on_message) as s:
            async with anyio.create_task_group() as tg:
                call = s.call_tool("hang", {"marker": str(marker)}, progress_callback=on_progress)
                tg.start_soon(lambda: call)
                await started.wait()  # the handler runs: its first FLY arrived as progress
                tg.cancel_scope.cancel()  # the client cancels the request, the session stays
            task_id = task_ids[0]
            # The task ends canceled, and the handler's `finally` ran in its runtime process.
            with anyio.fail_after(20, reason="the task did not end canceled"):
                while await task_status(way, task_id) != "canceled":  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            with anyio.fail_after(20, reason="canceled, but the handler's finally did not run"):
                while not marker.exists():  # noqa: ASYNC110 - another process writes it
                    await anyio.sleep(0.05)
    with contextlib.suppress(OSError):
        marker.unlink()


async def test_flow_past_its_timeout_ends_the_call_naming_it(way: Way) -> None:
    with anyio.fail_after(60):
        async with open_session(way.mcp_url, REVISIONS[-1]) as s:
            start = time.monotonic()
            result = await s.call_tool("slow", {})
            took = time.monotonic() - start
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error, text
    assert "passed its timeout of 3s" in text, text
    assert 2.5 < took < 30, (took, text)
