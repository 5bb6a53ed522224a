"""A handshake session belongs to the principal that opened it: the gateway with client keys,
served by uvicorn, the official MCP client for the owner, raw HTTP for the intruder."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.auth.helpers import ALICE, BOB, MESH, Served, gateway
from tests.gateway.helpers import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REVISION = "2025-11-25"  # a handshake revision: the only ones with sessions
#: What the SDK answers for a session it does not know, and so for another principal's.
NOT_FOUND = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": types.INVALID_REQUEST, "message": "Session not found"},
}


@dataclass
class Opened:
    """An official client's session, with what its HTTP traffic showed: the session id, and the
    JSON-RPC id of each request it sent (by method)."""

    session: ClientSession
    ids: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None


@contextlib.asynccontextmanager
async def opened(url: str, headers: dict[str, str]) -> AsyncIterator[Opened]:
    box: list[Opened] = []

    async def on_request(request: httpx2.Request) -> None:
        if request.method == "POST":
            body = json.loads(request.content)
            if isinstance(body, dict) and "id" in body:
                box[0].ids[body["method"]] = body["id"]

    async def on_response(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid is not None:
            box[0].session_id = sid

    hooks = {"request": [on_request], "response": [on_response]}
    async with (
        httpx2.AsyncClient(headers=headers, event_hooks=hooks) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        box.append(Opened(session))
        await session.initialize()
        assert session.protocol_version == REVISION
        assert box[0].session_id is not None
        yield box[0]


def _raw(headers: dict[str, str], session_id: str) -> dict[str, str]:
    """A well-formed request of the session's revision: only the credential can be wrong."""
    return headers | {
        "Mcp-Session-Id": session_id,
        "Mcp-Protocol-Version": REVISION,
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }


async def _intrude(c: httpx.AsyncClient, url: str, headers: dict[str, str], sid: str) -> None:
    """Every verb of the session, presented by someone else: each answered as an unknown one."""
    raw = _raw(headers, sid)
    ping = {"jsonrpc": "2.0", "id": 99, "method": "ping"}
    for r in (
        await c.post(f"{url}/mcp", json=ping, headers=raw),
        await c.get(f"{url}/mcp", headers=raw | {"Accept": "text/event-stream"}),
        await c.delete(f"{url}/mcp", headers=raw),
    ):
        assert r.status_code == 404, (r.request.method, r.status_code, r.text)
        assert r.json() == NOT_FOUND, r.request.method


async def _finish(gw: Served, c: httpx.AsyncClient, answer: int) -> str:
    """Wait for the next task's envelope and report it succeeded, as its sidecar would."""
    count = len(gw.enqueued)
    await wait_until(lambda: len(gw.enqueued) > count, 10)
    tid = str(json.loads(gw.enqueued[-1][1])["id"])
    done = {"type": "status", "status": "succeeded", "data": {"result": {"answer": answer}}}
    r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=done, headers=MESH)
    assert r.status_code == 204, r.text
    return tid


async def test_another_key_cannot_use_a_session() -> None:
    async with gateway() as gw, httpx.AsyncClient(timeout=10) as c, opened(gw.url, ALICE) as a:
        assert a.session_id is not None
        results: list[types.CallToolResult] = []
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                results.append(await a.session.call_tool("chat", {"query": "hi"}))

            tg.start_soon(call)
            count = len(gw.enqueued)
            await wait_until(lambda: len(gw.enqueued) > count, 10)
            tid = str(json.loads(gw.enqueued[-1][1])["id"])
            # While Alice's call runs: Bob cannot join her stream, ping, or end her session...
            await _intrude(c, gw.url, BOB, a.session_id)
            # ...nor cancel her call by its request id.
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": a.ids["tools/call"], "reason": "not yours"},
            }
            r = await c.post(f"{gw.url}/mcp", json=cancel, headers=_raw(BOB, a.session_id))
            assert (r.status_code, r.json()) == (404, NOT_FOUND)
            task = await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)
            assert task.json()["status"] not in ("canceled", "failed"), task.text
            done = {"type": "status", "status": "succeeded", "data": {"result": {"answer": 1}}}
            r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=done, headers=MESH)
            assert r.status_code == 204, r.text
        assert results and not results[0].is_error, results
        assert results[0].structured_content == {"answer": 1}
        # Alice's session is intact: another call on it works.
        async with anyio.create_task_group() as tg:
            tg.start_soon(_finish, gw, c, 2)
            again = await a.session.call_tool("chat", {"query": "again"})
        assert again.structured_content == {"answer": 2}
        # Bob's own session works, and Alice cannot use it either.
        async with opened(gw.url, BOB) as b:
            assert [t.name for t in (await b.session.list_tools()).tools] == ["chat"]
            assert b.session_id is not None
            await _intrude(c, gw.url, ALICE, b.session_id)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_finish, gw, c, 3)
                mine = await b.session.call_tool("chat", {"query": "bob"})
            assert mine.structured_content == {"answer": 3}
        assert (await a.session.list_tools()).tools[0].name == "chat"


async def test_a_jwt_of_another_subject_cannot_use_a_session() -> None:
    import time

    import jwt

    secret = "jwt-secret-0123456789abcdef0123456789"

    def bearer(sub: str, **claims: Any) -> dict[str, str]:
        # `exp` is required: the gateway refuses a JWT that never expires.
        claims = {"sub": sub, "exp": int(time.time()) + 300} | claims
        token = jwt.encode(claims, secret, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    async with (
        gateway(jwt_key=f"hs256:{secret}") as gw,
        httpx.AsyncClient(timeout=10) as c,
        opened(gw.url, bearer("carol")) as carol,
    ):
        assert carol.session_id is not None
        await _intrude(c, gw.url, bearer("dave"), carol.session_id)
        # A key named like the subject is another principal (`key:carol` is not `jwt:carol`).
        await _intrude(c, gw.url, ALICE, carol.session_id)
        # Another token of the same subject is the same principal: served.
        again = bearer("carol", n=2)
        ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
        r = await c.post(f"{gw.url}/mcp", json=ping, headers=_raw(again, carol.session_id))
        assert r.status_code == 200, r.text
        assert (await carol.session.list_tools()).tools[0].name == "chat"


async def test_the_owner_is_forgotten_with_the_session() -> None:
    async with gateway() as gw:
        owners = gw.app.state.mcp.manager._session_owners  # the SDK's map: session → owner
        async with opened(gw.url, ALICE) as a, opened(gw.url, BOB) as b:
            assert a.session_id is not None and b.session_id is not None
            assert {sid: o["client_id"] for sid, o in owners.items()} == {
                a.session_id: "key:alice",
                b.session_id: "key:bob",
            }
            assert "key-alice" not in repr(owners) and "key-bob" not in repr(owners)
        # Leaving the client DELETEs each session; its owner goes with it.
        assert owners == {}
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                f"{gw.url}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers=_raw(ALICE, a.session_id),
            )
        assert (r.status_code, r.json()) == (404, NOT_FOUND)


async def test_with_access_control_off_sessions_are_unchanged() -> None:
    async with (
        gateway(api_keys=None, mesh_token=None) as gw,
        httpx.AsyncClient(timeout=10) as c,
        opened(gw.url, {}) as a,
    ):
        assert a.session_id is not None
        assert gw.app.state.mcp.manager._session_owners == {}
        # Any client holding the id is served, as the SDK does with no authentication.
        ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
        r = await c.post(f"{gw.url}/mcp", json=ping, headers=_raw({}, a.session_id))
        assert r.status_code == 200, r.text
        async with anyio.create_task_group() as tg:
            tg.start_soon(_finish, gw, c, 4)
            result = await a.session.call_tool("chat", {"query": "open"})
        assert result.structured_content == {"answer": 4}
        r = await c.delete(f"{gw.url}/mcp", headers=_raw({}, a.session_id))
        assert r.status_code == 200, r.text
        r = await c.post(f"{gw.url}/mcp", json=ping, headers=_raw({}, a.session_id))
        assert r.status_code == 404
