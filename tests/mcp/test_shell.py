"""The MCP door's shell over real HTTP with the official client (both protocol eras), backed by
the in-process task service: tools, progress, results, errors, cancellation, the timeout."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asya_gateway.mcp import TASK_ID_META, mcp_app

from .conftest import SHELL_FLOWS, Door, open_session, serve
from .memservice import MemoryTaskService

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Recorder:
    """Progress as the client's callback sees it, plus the raw notifications (for `_meta`)."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, str | None, float]] = []
        self.notes: list[types.ProgressNotificationParams] = []
        self.first = anyio.Event()

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, message, time.monotonic()))
        self.first.set()

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ProgressNotification):
            self.notes.append(message.params)


async def test_tools_list_shows_the_mcp_flows(any_door: str, revision: str) -> None:
    async with open_session(any_door, revision) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    assert set(tools) == {"tokens", "bad", "hang", "slow", "late", "strict"}  # not "hidden"
    assert tools["tokens"].description == "Stream tokens"
    assert tools["tokens"].input_schema["properties"]["delay"] == {"type": "number", "minimum": 0}
    assert tools["bad"].input_schema == {"type": "object"}
    assert "bad" in (tools["bad"].description or "")


async def test_call_streams_each_fly_as_progress_before_the_result(
    door: Door, revision: str
) -> None:
    rec = Recorder()
    flys: list[Any] = ["Hel", "lo", {"step": 3, "note": "ü"}, " world"]
    async with open_session(door.url, revision, message_handler=rec.on_message) as s:
        start = time.monotonic()
        result = await s.call_tool(
            "tokens",
            {"flys": flys, "delay": 0.15, "result": {"answer": 42}},
            progress_callback=rec.on_progress,
        )
        end = time.monotonic()
    assert [p for p, _, _ in rec.progress] == [1, 2, 3, 4]
    assert [m for _, m, _ in rec.progress] == ["Hel", "lo", '{"step":3,"note":"ü"}', " world"]
    # Live: the first notification long before the result (4 FLYs 0.15 s apart).
    assert rec.progress[0][2] - start < (end - start) - 0.3
    assert not result.is_error
    assert result.structured_content == {"answer": 42}
    assert [c.type for c in result.content] == ["text"]
    assert result.content[0].text == "Hello world"  # type: ignore[union-attr]
    task_id = door.service.created[-1].id
    assert result.meta is not None and result.meta[TASK_ID_META] == task_id
    assert [n.meta for n in rec.notes] == [{TASK_ID_META: task_id}] * 4
    created = door.service.created[-1]
    assert created.route == ["tokens"] and created.flow == "tokens"


async def test_call_without_progress_token_returns_only_the_result(
    door: Door, revision: str
) -> None:
    rec = Recorder()
    async with open_session(door.url, revision, message_handler=rec.on_message) as s:
        result = await s.call_tool("tokens", {"flys": [{"k": 1}], "delay": 0, "result": [1, 2]})
    assert rec.notes == []
    assert result.structured_content == {"result": [1, 2]}  # a non-object result is wrapped
    assert result.content[0].text == "[1,2]"  # type: ignore[union-attr]  # no texts: result JSON
    assert not result.is_error


async def test_failing_flow_is_a_tool_error_with_the_message(door: Door, revision: str) -> None:
    async with open_session(door.url, revision) as s:
        result = await s.call_tool("bad", {"message": "the model is on fire"})
    assert result.is_error
    assert result.content[0].text == "the model is on fire"  # type: ignore[union-attr]
    assert result.meta is not None
    assert result.meta[TASK_ID_META] == door.service.created[-1].id


async def test_unknown_and_non_mcp_tools_are_invalid_params(any_door: str, revision: str) -> None:
    async with open_session(any_door, revision) as s:
        for name in ("nope", "hidden"):
            with pytest.raises(MCPError) as err:
                await s.call_tool(name, {})
            assert err.value.code == types.INVALID_PARAMS
            assert repr(name) in err.value.message


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "`prompt`: required argument is missing"),
        ({"prompt": 3}, "`prompt`: 3 is not of type 'string'"),
        ({"prompt": "x", "n": 1.5}, "`n`: 1.5 is not of type 'integer'"),
        ({"prompt": "x", "extra": 1}, "`extra`: unexpected argument"),
    ],
)
async def test_schema_violation_is_refused_before_any_task(
    any_door: str, revision: str, arguments: dict[str, Any], named: str
) -> None:
    async with open_session(any_door, revision) as s:
        result = await s.call_tool("strict", arguments)
    assert result.is_error
    assert named in result.content[0].text  # type: ignore[union-attr]
    assert TASK_ID_META not in (result.meta or {})  # no task: the fixture checks nothing ran


async def test_cancelled_call_cancels_the_task(door: Door, revision: str) -> None:
    async with open_session(door.url, revision) as s:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.call_tool, "hang", {})
                with anyio.fail_after(10):
                    while not door.service.created:  # noqa: ASYNC110 - the task appears server-side
                        await anyio.sleep(0.01)
                task_id = door.service.created[-1].id
                with anyio.fail_after(10):
                    while task_id not in door.service.finally_ran:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                scope.cancel()
        with anyio.fail_after(10):
            await door.service.finally_ran[task_id].wait()
    assert door.service.cancels == [task_id]
    assert (await door.service.get(task_id)).status == "canceled"


async def test_flow_past_its_timeout_is_an_error_naming_it(door: Door, revision: str) -> None:
    async with open_session(door.url, revision) as s:
        start = time.monotonic()
        result = await s.call_tool("slow", {})
        took = time.monotonic() - start
    assert result.is_error
    assert "passed its timeout of 0.5s" in result.content[0].text  # type: ignore[union-attr]
    assert 0.4 < took < 5
    task_id = door.service.created[-1].id
    assert (await door.service.get(task_id)).status == "canceled"


async def test_task_failed_by_its_deadline_names_the_timeout(door: Door, revision: str) -> None:
    async with open_session(door.url, revision) as s:
        result = await s.call_tool("late", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "'late' passed its timeout of 0.3s" in text


@pytest.mark.parametrize("old", ["2025-03-26", "2025-06-18"])
async def test_an_older_handshake_revision_is_served(door: Door, old: str) -> None:
    """Older revisions than the SDK client's, spoken by hand (2025-03-26, the first Streamable
    HTTP one, and 2025-06-18): initialize, then list."""
    headers = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": old,
            "capabilities": {},
            "clientInfo": {"name": "hand", "version": "0"},
        },
    }
    async with httpx.AsyncClient(base_url=door.url, timeout=10) as c:
        r = await c.post("/mcp", json=init, headers=headers)
        assert r.status_code == 200, r.text
        assert f'"protocolVersion":"{old}"' in r.text.replace(" ", "")
        sid = r.headers["mcp-session-id"]
        h = headers | {"mcp-session-id": sid, "mcp-protocol-version": old}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await c.post("/mcp", json=note, headers=h)).status_code == 202
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        r = await c.post("/mcp", json=listing, headers=h)
        assert r.status_code == 200
        assert '"name":"tokens"' in r.text.replace(" ", "")


async def test_mounted_beside_other_routes_as_the_gateway_does() -> None:
    """The mounting recipe of the report: the door's routes among others, its lifespan inside
    the app's own."""
    svc = MemoryTaskService()
    door = mcp_app(svc, SHELL_FLOWS)

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with svc.running(), door.lifespan():
            yield

    app = Starlette(routes=[Route("/health", health), *door.routes()], lifespan=lifespan)
    async with serve(app) as url:
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{url}/health")).text == "ok"
        for revision in ("2025-11-25", "2026-07-28"):
            async with open_session(url, revision) as s:
                result = await s.call_tool("tokens", {"flys": ["a", "b"], "delay": 0})
            assert result.content[0].text == "ab"  # type: ignore[union-attr]


async def test_calls_torn_down_while_the_gateway_stops_leave_their_tasks(revision: str) -> None:
    svc = MemoryTaskService()
    door = mcp_app(svc, SHELL_FLOWS)
    async with svc.running():
        async with (
            serve(door.starlette()) as url,
            open_session(url, revision) as s,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(s.call_tool, "hang", {})
            with anyio.fail_after(10):
                while not svc.finally_ran:  # noqa: ASYNC110 - the handler is running
                    await anyio.sleep(0.01)
            door.stop()  # the gateway got its shutdown signal
            tg.cancel_scope.cancel()
        # The server is gone, so every handler has ended: none canceled its task.
        (task_id,) = svc.finally_ran
        assert svc.cancels == []
        assert (await svc.get(task_id)).status == "running"
