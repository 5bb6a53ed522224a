"""The official clients against a gateway with keys: the a2a-sdk client (its AuthInterceptor
reading the card's securitySchemes, or plain headers) and the mcp client (a bearer header)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from a2a.client import (
    AuthInterceptor,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .helpers import ALICE, BOB, gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Keys(CredentialService):
    def __init__(self, key: str) -> None:
        self.key = key

    async def get_credentials(self, security_scheme_name: str, context: Any) -> str | None:
        return self.key if security_scheme_name == "bearer" else None


def _send(text: str) -> pb.SendMessageRequest:
    msg = pb.Message(
        role=pb.Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[pb.Part(text=text)]
    )
    req = pb.SendMessageRequest(
        message=msg, configuration=pb.SendMessageConfiguration(return_immediately=True)
    )
    req.metadata.update({"skill": "chat"})
    return req


async def _first_task(client: Any, req: pb.SendMessageRequest) -> pb.Task:
    async for resp in client.send_message(req):
        return resp.task if hasattr(resp, "task") and resp.HasField("task") else resp[0]
    raise AssertionError("no response")


async def test_a2a_sdk_client_with_its_auth_interceptor() -> None:
    async with gateway() as gw:
        factory = ClientFactory(ClientConfig(streaming=False))
        alice = await factory.create_from_url(
            gw.url, interceptors=[AuthInterceptor(Keys("key-alice-0123456789"))]
        )
        task = await _first_task(alice, _send("hi"))
        assert task.id
        got = await alice.get_task(pb.GetTaskRequest(id=task.id))
        assert got.id == task.id
        listed = await alice.list_tasks(pb.ListTasksRequest())
        assert [t.id for t in listed.tasks] == [task.id]

        # Streaming, too: the SDK's SSE call carries the interceptor's header.
        alice_stream = await ClientFactory(ClientConfig(streaming=True)).create_from_url(
            gw.url, interceptors=[AuthInterceptor(Keys("key-alice-0123456789"))]
        )
        req = _send("streamed")
        req.configuration.return_immediately = False
        with anyio.fail_after(10):
            async for resp in alice_stream.send_message(req):
                first = resp.task if resp.HasField("task") else None
                break
        assert first is not None and first.id
        await alice_stream.close()

        # Bob, with headers on his own httpx client: not his task.
        bob_http = httpx.AsyncClient(headers=BOB)
        bob = await ClientFactory(
            ClientConfig(streaming=False, httpx_client=bob_http)
        ).create_from_url(gw.url)
        with pytest.raises(a2a_errors.TaskNotFoundError):
            await bob.get_task(pb.GetTaskRequest(id=task.id))
        with pytest.raises(a2a_errors.TaskNotFoundError):
            await bob.cancel_task(pb.CancelTaskRequest(id=task.id))
        assert list((await bob.list_tasks(pb.ListTasksRequest())).tasks) == []
        bob_stream = await ClientFactory(
            ClientConfig(streaming=True, httpx_client=bob_http)
        ).create_from_url(gw.url)
        with pytest.raises(a2a_errors.TaskNotFoundError):
            async for _ in bob_stream.subscribe(pb.SubscribeToTaskRequest(id=task.id)):
                pass
        await bob_stream.close()

        # No key: a clean error (HTTP 401), not a hang or a traceback from the server.
        anon = await ClientFactory(ClientConfig(streaming=False)).create_from_url(gw.url)
        with anyio.fail_after(10), pytest.raises(Exception) as info:
            await _first_task(anon, _send("hi"))
        assert "401" in str(info.value) or "unauthenticated" in str(info.value).lower()
        for c in (alice, bob, anon):
            await c.close()
        await bob_http.aclose()


async def test_a2a_401_is_a_json_rpc_error() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        body = {"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "x"}}
        r = await c.post(f"{gw.url}/a2a", json=body)
        assert r.status_code == 401
        doc = r.json()
        assert doc["jsonrpc"] == "2.0" and "missing credentials" in doc["error"]["message"]
        r = await c.post(f"{gw.url}/a2a", json=body, headers=ALICE)
        assert r.status_code == 200 and r.json()["error"]["code"] == -32001  # not found
        v03 = {"jsonrpc": "2.0", "id": 8, "method": "tasks/get", "params": {"id": "x"}}
        r = await c.post(f"{gw.url}/a2a/chat", json=v03, headers=BOB | {"A2A-Version": "0.3"})
        assert r.status_code == 200 and r.json()["error"]["code"] == -32001
        r = await c.post(f"{gw.url}/a2a/chat", json=v03)
        assert r.status_code == 401 and r.json()["error"]["code"] == -32000


async def test_mcp_client_with_a_bearer_header() -> None:
    async with gateway() as gw:
        async with (
            httpx2.AsyncClient(headers=ALICE) as http,
            streamable_http_client(f"{gw.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = (await session.list_tools()).tools
            assert [t.name for t in tools] == ["chat"]
        with anyio.fail_after(15), pytest.raises(BaseException) as info:
            async with (
                streamable_http_client(f"{gw.url}/mcp") as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
        # The SDK turns the 401 into an MCPError ("Server returned an error response"), fast.
        assert "MCPError" in repr(info.value) or "401" in repr(info.value)


async def test_mcp_tool_calls_create_tasks_owned_by_the_caller() -> None:
    import json

    from .helpers import MESH

    async with gateway() as gw, httpx.AsyncClient() as c:
        async with (
            httpx2.AsyncClient(headers=ALICE) as http,
            streamable_http_client(f"{gw.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
            anyio.create_task_group() as tg,
        ):
            await session.initialize()
            results: list[Any] = []

            async def call() -> None:
                results.append(await session.call_tool("chat", {"query": "hi"}))

            tg.start_soon(call)
            with anyio.fail_after(10):
                while not gw.enqueued:  # noqa: ASYNC110  # the envelope is the task's trace
                    await anyio.sleep(0.02)
            tid = json.loads(gw.enqueued[-1][1])["id"]
            assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=BOB)).status_code == 404
            assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 200
            done = {"type": "status", "status": "succeeded", "data": {"result": {"answer": 42}}}
            r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=done, headers=MESH)
            assert r.status_code == 204
        assert results and not results[0].is_error and "42" in results[0].content[0].text


async def test_mcp_401_carries_the_bearer_challenge() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer ")
        assert r.json()["error"] == "invalid_token"
