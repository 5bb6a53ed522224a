"""The A2A door (v1.0 and v0.3, the official a2a-sdk client) and the MCP door's `tools/call`
(the official mcp client) × {no key, wrong key, other owner's key, right key}: one gateway for
the module, each case on a task of Alice's made for it, each refusal in the protocol's shape."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.helpers import wait_until

from .helpers import ALICE, BOB, MESH, WRONG, Served, gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

#: Each caller's headers; "other" is Bob, who owns none of the tasks made here.
CALLERS: dict[str, dict[str, str]] = {"none": {}, "wrong": WRONG, "other": BOB, "right": ALICE}
#: What the guard's 401 says for each refused caller.
REFUSAL = {"none": "missing credentials", "wrong": "invalid credentials: unknown API key"}
VERSIONS = ["1.0", "0.3"]
OPS = ["get", "cancel", "subscribe", "list", "resume"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-scoped, so the module's gateway lives in one loop


@pytest.fixture(scope="module")
async def gw() -> AsyncIterator[Served]:
    async with gateway() as served:
        yield served


@dataclass
class Seen:
    """The JSON bodies of the error answers a client received (what the SDK turned into an
    exception), with their HTTP status."""

    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    challenges: list[str] = field(default_factory=list)

    async def hook(self, response: httpx.Response | httpx2.Response) -> None:
        try:
            sent = json.loads(response.request.content) if response.request.method == "POST" else 0
        except ValueError:
            sent = 0
        if not isinstance(sent, dict) or "id" not in sent:
            return  # the MCP client's GET stream, DELETE and notifications: not under test
        if response.status_code == 401:
            self.challenges.append(response.headers.get("www-authenticate", ""))
        if not response.headers.get("content-type", "").startswith("application/json"):
            return  # an SSE stream: reading it here would wait for its end
        await response.aread()
        if not response.content:
            return  # 202 Accepted for a notification
        doc = json.loads(response.content)
        if response.status_code >= 400 or (isinstance(doc, dict) and "error" in doc):
            self.errors.append((response.status_code, doc))

    def only(self) -> tuple[int, dict[str, Any]]:
        assert len(self.errors) == 1, self.errors
        return self.errors[0]


def _message(text: str, task_id: str | None = None) -> pb.Message:
    msg = pb.Message(
        role=pb.Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[pb.Part(text=text)]
    )
    if task_id is not None:
        msg.task_id = task_id
    return msg


def _send(msg: pb.Message) -> pb.SendMessageRequest:
    req = pb.SendMessageRequest(
        message=msg, configuration=pb.SendMessageConfiguration(return_immediately=True)
    )
    req.metadata.update({"skill": "chat"})
    return req


@contextlib.asynccontextmanager
async def a2a_client(
    url: str, headers: dict[str, str], version: str, seen: Seen, *, streaming: bool = False
) -> AsyncIterator[Client]:
    """The official client speaking `version` (the card's interfaces of that version only),
    sending `headers` on every call."""
    async with httpx.AsyncClient(
        headers=headers, timeout=10, event_hooks={"response": [seen.hook]}
    ) as http:
        config = ClientConfig(streaming=streaming, httpx_client=http)
        probe = await ClientFactory(config).create_from_url(url)  # the card is public
        card = pb.AgentCard()
        card.CopyFrom(probe._card)  # type: ignore[attr-defined]
        keep = [i for i in card.supported_interfaces if i.protocol_version == version]
        assert keep, card.supported_interfaces
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(keep)
        client = ClientFactory(config).create(card)
        try:
            yield client
        finally:
            await client.close()
            await probe.close()


async def _task_of_alice(gw: Served, *, paused: bool) -> str:
    """A task Alice creates over A2A (v1.0); `paused`: a sidecar then reports it paused."""
    async with a2a_client(gw.url, ALICE, "1.0", Seen()) as alice:
        async for resp in alice.send_message(_send(_message("mine"))):
            tid = resp.task.id
            break
    async with httpx.AsyncClient(timeout=10) as c:
        if paused:
            envelope = {"id": tid, "route": {"prev": [], "curr": "tokens", "next": []}}
            ev = {"type": "status", "status": "paused", "data": {"envelope": envelope}}
            r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=ev, headers=MESH)
            assert r.status_code == 204, r.text
    return tid


async def _status(gw: Served, tid: str) -> str:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])


def _enqueued_for(gw: Served, tid: str) -> int:
    return sum(1 for _, body in gw.enqueued if json.loads(body)["id"] == tid)


async def _list_v03(gw: Served, headers: dict[str, str], seen: Seen) -> list[str]:
    """v0.3 `tasks/list` as raw JSON-RPC: the SDK's v0.3 client has no ListTasks."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/list", "params": {}}
    async with httpx.AsyncClient(timeout=10, event_hooks={"response": [seen.hook]}) as c:
        r = await c.post(f"{gw.url}/a2a", json=body, headers=headers)
    if r.status_code != 200 or "error" in r.json():
        raise A2AClientError(f"HTTP Error {r.status_code}")
    return [t["id"] for t in r.json()["result"]["tasks"]]


async def _a2a_op(
    gw: Served, client: Client, op: str, tid: str, *, version: str, caller: str, seen: Seen
) -> Any:
    """One call of `op` on task `tid`; what the client returned (or it raises)."""
    with anyio.fail_after(15):
        if op == "get":
            return await client.get_task(pb.GetTaskRequest(id=tid))
        if op == "cancel":
            return await client.cancel_task(pb.CancelTaskRequest(id=tid))
        if op == "subscribe":
            async for resp in client.subscribe(pb.SubscribeToTaskRequest(id=tid)):
                return resp  # the first event: the task caught up
            raise AssertionError("the subscription ended without an event")
        if op == "list":
            if version == "0.3":
                return await _list_v03(gw, CALLERS[caller], seen)
            return [t.id for t in (await client.list_tasks(pb.ListTasksRequest())).tasks]
        req = _send(_message("my answer", task_id=tid))
        async for resp in client.send_message(req):
            return resp
        raise AssertionError("SendMessage answered nothing")


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("version", VERSIONS)
async def test_a2a_by_caller(gw: Served, version: str, op: str, caller: str) -> None:
    tid = await _task_of_alice(gw, paused=op == "resume")
    before = await _status(gw, tid)
    sent = _enqueued_for(gw, tid)
    seen = Seen()
    streaming = op == "subscribe"
    call = {"version": version, "caller": caller, "seen": seen}
    async with a2a_client(gw.url, CALLERS[caller], version, seen, streaming=streaming) as client:
        if caller in REFUSAL:
            # HTTP 401 with a JSON-RPC error object; the SDK raises its HTTP error on it.
            with pytest.raises(A2AClientError, match="401"):
                await _a2a_op(gw, client, op, tid, **call)
            status, doc = seen.only()
            assert status == 401 and doc["jsonrpc"] == "2.0" and doc["id"] is None
            assert doc["error"]["code"] == -32000
            assert doc["error"]["message"].startswith(f"unauthenticated: {REFUSAL[caller]}")
            assert seen.challenges[0].startswith("Bearer ")
        elif caller == "other":
            if op == "list":
                assert await _a2a_op(gw, client, op, tid, **call) == []  # Bob has none
                assert seen.errors == []
            else:
                # Not Bob's: the same TaskNotFoundError (-32001) as for a missing task.
                with pytest.raises(a2a_errors.TaskNotFoundError):
                    await _a2a_op(gw, client, op, tid, **call)
                status, doc = seen.only()
                assert status == 200 and doc["error"]["code"] == -32001
        else:
            out = await _a2a_op(gw, client, op, tid, **call)
            assert seen.errors == []
            if op == "get":
                assert out.id == tid
            elif op == "cancel":
                assert out.id == tid and out.status.state == pb.TaskState.TASK_STATE_CANCELED
            elif op == "subscribe":
                assert out.HasField("task") and out.task.id == tid
            elif op == "list":
                assert tid in out
            else:
                assert out.HasField("task") and out.task.id == tid
                assert out.task.status.state == pb.TaskState.TASK_STATE_WORKING
    # Whoever was refused changed nothing: no cancel, no resume.
    after = await _status(gw, tid)
    if caller == "right" and op == "cancel":
        assert after == "canceled"
    elif caller == "right" and op == "resume":
        assert after != "paused" and _enqueued_for(gw, tid) == sent + 1
    else:
        assert after == before and _enqueued_for(gw, tid) == sent, (before, after)


@contextlib.asynccontextmanager
async def mcp_session(url: str, seen: Seen) -> AsyncIterator[tuple[ClientSession, Any]]:
    """Alice's session with the official client; the caller's key is swapped in afterwards."""
    async with (
        httpx2.AsyncClient(headers=ALICE, event_hooks={"response": [seen.hook]}) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()  # as Alice: the session is in use before the swap
        try:
            yield session, http
        finally:
            http.headers.pop("Authorization", None)
            http.headers.update(ALICE)  # Alice ends her own session


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_mcp_tools_call_by_caller(gw: Served, caller: str) -> None:
    seen = Seen()
    async with mcp_session(gw.url, seen) as (session, http), httpx.AsyncClient() as c:
        http.headers.pop("Authorization", None)
        http.headers.update(CALLERS[caller])
        count = len(gw.enqueued)
        if caller != "right":
            with anyio.fail_after(15), pytest.raises(MCPError) as info:
                await session.call_tool("chat", {"query": "hi"})
            status, doc = seen.only()
            if caller in REFUSAL:
                # MCP's 401: the bearer challenge and RFC 6750's body, as the SDK's own.
                assert status == 401 and doc["error"] == "invalid_token"
                assert doc["error_description"].startswith(REFUSAL[caller])
                assert seen.challenges[0].startswith("Bearer ")
                assert f'error_description="{REFUSAL[caller]}' in seen.challenges[0]
            else:
                # Bob on Alice's session: as unknown a session as a made-up one.
                assert status == 404 and doc["error"]["message"] == "Session not found"
                assert info.value.message == "Session not found"
            assert len(gw.enqueued) == count  # no task was made
            return
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                results.append(await session.call_tool("chat", {"query": "hi"}))

            tg.start_soon(call)
            await wait_until(lambda: len(gw.enqueued) > count, 10)
            tid = str(json.loads(gw.enqueued[-1][1])["id"])
            # The tool call's task is Alice's: Bob gets 404 for it.
            assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=BOB)).status_code == 404
            assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 200
            done = {"type": "status", "status": "succeeded", "data": {"result": {"answer": 7}}}
            r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=done, headers=MESH)
            assert r.status_code == 204, r.text
        assert (
            results and not results[0].is_error and results[0].structured_content == {"answer": 7}
        )
        assert seen.errors == []
