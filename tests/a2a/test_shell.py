"""The A2A shell over real HTTP, driven with the official a2a-sdk client, against an in-process
TaskService that the tests move as the mesh would (chunk by chunk, in lockstep with the client)."""

from __future__ import annotations

import json
import uuid
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors

from asya_gateway.a2a import DoorConfig

from .conftest import Door, serve
from .memservice import MemService
from .shapes import check_response, check_v03_event, check_v1_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

DONE = pb.TaskState.TASK_STATE_COMPLETED


def send_req(text: str, *, skill: str | None = "chat", task_id: str = "") -> pb.SendMessageRequest:
    msg = pb.Message(
        role=pb.Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[pb.Part(text=text)]
    )
    if task_id:
        msg.task_id = task_id
    req = pb.SendMessageRequest(message=msg)
    if skill:
        req.metadata.update({"skill": skill})
    return req


def kind(ev: pb.StreamResponse) -> str:
    return str(ev.WhichOneof("payload"))


async def next_task_id(service: MemService) -> str:
    with anyio.fail_after(10):
        while not service.created:
            await service.task_created.wait()
    return str(service.created[-1]["id"])


async def rpc(door: Door, body: Any, path: str = "/a2a") -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = await http.post(door.url + path, content=content)
    assert r.status_code == 200
    obj: dict[str, Any] = r.json()
    check_response(obj)
    return obj


# -- cards ----------------------------------------------------------------------------------------


async def test_cards(door: Door) -> None:
    async with httpx.AsyncClient() as http:
        root = (await http.get(door.url + "/.well-known/agent-card.json")).json()
        alias = (await http.get(door.url + "/.well-known/agent.json")).json()
        one = (await http.get(door.url + "/a2a/chat/.well-known/agent-card.json")).json()
        missing = await http.get(door.url + "/a2a/nope/.well-known/agent-card.json")
        hidden = await http.get(door.url + "/a2a/hidden/.well-known/agent-card.json")
    assert root == alias
    assert [s["id"] for s in root["skills"]] == ["chat", "other"]
    assert root["supportedInterfaces"][0] == {
        "url": door.url + "/a2a",
        "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0",
    }
    assert root["capabilities"] == {"streaming": True, "pushNotifications": False}
    assert (root["url"], root["protocolVersion"]) == (door.url + "/a2a", "0.3.0")
    assert one["url"] == door.url + "/a2a/chat" and [s["id"] for s in one["skills"]] == ["chat"]
    assert missing.status_code == 404 and hidden.status_code == 404


# -- streaming ------------------------------------------------------------------------------------


async def test_streaming_live_chunk_by_chunk_and_ends_by_itself(door: Door) -> None:
    svc = door.service
    client = await door.client()
    got: list[pb.StreamResponse] = []
    arrived = anyio.Event()

    async def consume() -> None:
        nonlocal arrived
        async with aclosing(client.send_message(send_req("hi"))) as stream:
            async for ev in stream:
                got.append(ev)
                arrived.set()
                arrived = anyio.Event()

    async def wait_for(n: int) -> None:
        with anyio.fail_after(10):
            while len(got) < n:
                await arrived.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            tid = await next_task_id(svc)
            await wait_for(1)
            assert kind(got[0]) == "task" and got[0].task.status.state == pb.TASK_STATE_SUBMITTED
            assert got[0].task.history[0].parts[0].text == "hi"
            svc.report(tid, "running")
            await wait_for(2)
            for i, tok in enumerate(["Hel", "lo", " world"]):
                svc.fly(tid, {"partial": True, "text": tok})
                await wait_for(3 + i)  # this chunk arrived before the next one exists
                assert got[-1].artifact_update.artifact.parts[0].text == tok
            svc.report(tid, "succeeded", result={"answer": "Hello world"})
        # the iterator ended by itself (the task group exited), right after COMPLETED
    assert kind(got[-1]) == "status_update" and got[-1].status_update.status.state == DONE
    arts = [e.artifact_update for e in got if kind(e) == "artifact_update"]
    stream = [a for a in arts if a.artifact.artifact_id == "stream"]
    assert [a.append for a in stream] == [False, True, True, True]
    assert sum(a.last_chunk for a in stream) == 1 and stream[-1].last_chunk
    assert "".join(p.text for a in stream for p in a.artifact.parts) == "Hello world"
    task = await client.get_task(pb.GetTaskRequest(id=tid))
    assert task.status.state == DONE
    by_id = {a.artifact_id: a for a in task.artifacts}
    assert by_id["stream"].parts[0].text == "Hello world"
    assert by_id["result"].parts[0].data.struct_value["answer"] == "Hello world"
    await client.close()


async def _drive(svc: MemService, tid: str, tokens: list[str], gate: anyio.Event) -> None:
    svc.report(tid, "running")
    for tok in tokens[:2]:
        svc.fly(tid, {"partial": True, "text": tok})
    await gate.wait()
    for tok in tokens[2:]:
        svc.fly(tid, {"partial": True, "text": tok})
    svc.report(tid, "succeeded", result="ok")


async def test_reconnect_mid_stream_loses_nothing_and_two_subscribers_agree(door: Door) -> None:
    svc = door.service
    client = await door.client()
    tokens = ["a", "b", "c", "d", "e"]
    gate = anyio.Event()
    seen: list[str] = []
    with anyio.fail_after(30):
        async with aclosing(client.send_message(send_req("go"))) as stream:
            first = await anext(stream)  # the request goes out on the first iteration
            tid = first.task.id
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drive, svc, tid, tokens, gate)
                async for ev in stream:
                    if kind(ev) == "artifact_update":
                        seen.append(ev.artifact_update.artifact.parts[0].text)
                    if len(seen) == 2:
                        break  # drop the connection after two chunks
                logs: list[list[tuple[str, str, bool, bool]]] = [[], []]
                snapshot_0 = anyio.Event()

                async def resubscribe(i: int) -> None:
                    async for ev in client.subscribe(pb.SubscribeToTaskRequest(id=tid)):
                        if kind(ev) == "task":
                            for a in ev.task.artifacts:
                                txt = "".join(p.text for p in a.parts)
                                logs[i].append(("snapshot", txt, False, False))
                            if i == 0:
                                snapshot_0.set()
                            else:
                                gate.set()  # both subscribed: let the mesh go on
                        elif kind(ev) == "artifact_update":
                            u = ev.artifact_update
                            txt = "".join(p.text for p in u.artifact.parts)
                            logs[i].append((u.artifact.artifact_id, txt, u.append, u.last_chunk))
                        else:
                            logs[i].append(("status", str(ev.status_update.status.state), 0, 0))

                async with anyio.create_task_group() as subs:
                    subs.start_soon(resubscribe, 0)
                    await snapshot_0.wait()  # subscriber 0 has its snapshot before 1 subscribes
                    subs.start_soon(resubscribe, 1)
    assert seen == ["a", "b"]
    assert logs[0] == logs[1], "two subscribers see the same events"
    log = logs[0]
    assert log[0] == ("snapshot", "ab", False, False)
    stream_txt = "".join(t for aid, t, _, _ in log if aid in ("snapshot", "stream"))
    assert stream_txt == "abcde", "snapshot + live = everything, nothing twice"
    assert log[-1] == ("status", str(DONE), 0, 0)
    await client.close()


async def test_failing_handler_is_failed_with_message(door: Door) -> None:
    client = await door.client()
    events: list[pb.StreamResponse] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for ev in client.send_message(send_req("x")):
                    events.append(ev)

            tg.start_soon(consume)
            tid = await next_task_id(door.service)
            door.service.report(tid, "running")
            door.service.fly(tid, {"text": "partial"})
            door.service.report(tid, "failed", error={"type": "ValueError", "message": "boom"})
    last = events[-1].status_update.status
    assert last.state == pb.TASK_STATE_FAILED
    assert "boom" in last.message.parts[0].text
    sealed = [e for e in events if kind(e) == "artifact_update" and e.artifact_update.last_chunk]
    assert len(sealed) == 1
    await client.close()


async def test_cancel(door: Door) -> None:
    client = await door.client(streaming=False)
    req = send_req("x")
    req.configuration.return_immediately = True
    async for resp in client.send_message(req):
        tid = resp.task.id
        assert resp.task.status.state == pb.TASK_STATE_SUBMITTED
    door.service.report(tid, "running")
    task = await client.cancel_task(pb.CancelTaskRequest(id=tid))
    assert task.status.state == pb.TASK_STATE_CANCELED
    with pytest.raises(a2a_errors.TaskNotCancelableError):
        await client.cancel_task(pb.CancelTaskRequest(id=tid))
    streaming = await door.client()
    with pytest.raises(a2a_errors.UnsupportedOperationError, match="terminal"):
        async for _ in streaming.subscribe(pb.SubscribeToTaskRequest(id=tid)):
            pass
    with pytest.raises(a2a_errors.TaskNotFoundError):
        await client.get_task(pb.GetTaskRequest(id="nope"))
    await client.close()
    await streaming.close()


async def test_silent_flow_outlives_the_client_read_timeout() -> None:
    async with serve(MemService(), config=DoorConfig(keepalive_seconds=0.3)) as door:
        client = await door.client(read_timeout=1.0)  # httpx read timeout: 1 s of silence
        states: list[int] = []
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async for ev in client.send_message(send_req("x")):
                        if kind(ev) == "status_update":
                            states.append(ev.status_update.status.state)

                tg.start_soon(consume)
                tid = await next_task_id(door.service)
                door.service.report(tid, "running")
                await anyio.sleep(2.5)  # the scenario itself: a mesh silent for 2.5 s
                door.service.report(tid, "succeeded", result=1)
        assert states == [pb.TASK_STATE_WORKING, DONE]
        await client.close()


async def test_non_streaming_send(door: Door) -> None:
    client = await door.client(streaming=False)
    out: list[pb.StreamResponse] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for resp in client.send_message(send_req("q")):
                    out.append(resp)

            tg.start_soon(consume)
            tid = await next_task_id(door.service)
            door.service.report(tid, "running")
            door.service.fly(tid, {"text": "t1"})
            door.service.report(tid, "succeeded", result={"r": 1})
    (resp,) = out
    assert resp.task.status.state == DONE and resp.task.id == tid
    assert {a.artifact_id for a in resp.task.artifacts} == {"stream", "result"}
    created = door.service.created[-1]
    assert created["route"] == ["tokens"] and created["payload"]["query"] == "q"
    assert created["payload"]["a2a"]["task"]["id"] == tid
    await client.close()


async def test_pause_and_resume(door: Door) -> None:
    svc = door.service
    client = await door.client()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            first: list[pb.StreamResponse] = []

            async def consume() -> None:
                async for ev in client.send_message(send_req("deploy")):
                    first.append(ev)

            tg.start_soon(consume)
            tid = await next_task_id(svc)
            svc.report(tid, "running")
            svc.report(tid, "paused", pause={"prompt": "Approve?"})
        # the stream closed right after INPUT_REQUIRED
        st = first[-1].status_update.status
        assert st.state == pb.TASK_STATE_INPUT_REQUIRED and st.message.parts[0].text == "Approve?"
        second: list[pb.StreamResponse] = []
        got_task = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def answer() -> None:
                async for ev in client.send_message(send_req("yes", task_id=tid)):
                    second.append(ev)
                    got_task.set()

            tg.start_soon(answer)
            await got_task.wait()  # the resumed stream is open (its Task came first)
            svc.report(tid, "succeeded", result={"deployed": True})
    assert svc.resumed[0]["patch"] == {"query": "yes"}
    assert kind(second[0]) == "task" and second[0].task.status.state == pb.TASK_STATE_WORKING
    assert second[-1].status_update.status.state == DONE
    with pytest.raises(a2a_errors.UnsupportedOperationError):
        async for _ in client.send_message(send_req("again", task_id=tid)):
            pass
    await client.close()


# -- v0.3 -----------------------------------------------------------------------------------------


async def test_v03_client_and_wire(door: Door) -> None:
    svc = door.service
    client = await door.client_v03()
    got: list[pb.StreamResponse] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for ev in client.send_message(send_req("hi")):
                    got.append(ev)

            tg.start_soon(consume)
            tid = await next_task_id(svc)
            svc.report(tid, "running")
            svc.fly(tid, {"text": "x"})
            svc.report(tid, "succeeded", result=1)
    assert got[-1].status_update.status.state == DONE
    await client.close()
    # the wire itself, validated with the SDK's v0.3 (pydantic) types
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "message/stream",
        "params": {
            "message": {"kind": "message", "role": "user", "messageId": "m1",
                        "parts": [{"kind": "text", "text": "hi"}]},
            "metadata": {"skill": "chat"},
        },
    }  # fmt: skip
    results: list[dict[str, Any]] = []
    with anyio.fail_after(20):
        async with httpx.AsyncClient() as http, anyio.create_task_group() as tg:

            async def read() -> None:
                async with http.stream("POST", door.url + "/a2a", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            obj = json.loads(line[6:])
                            check_response(obj)
                            assert obj["id"] == 7
                            results.append(obj["result"])

            n = len(svc.created)
            tg.start_soon(read)
            while len(svc.created) == n:
                await svc.task_created.wait()
            tid = svc.created[-1]["id"]
            svc.report(tid, "running")
            svc.fly(tid, {"text": "x"})
            svc.fly(tid, {"artifact_update": {"artifact_id": "a", "parts": [{"data": {"k": 1}}]}})
            svc.report(tid, "succeeded", result=[1, 2])
    for r in results:
        check_v03_event(r)
    assert results[0]["kind"] == "task"
    assert results[-1]["status"]["state"] == "completed" and results[-1]["final"] is True
    assert all(r["final"] is False for r in results[:-1] if r["kind"] == "status-update")
    get = await rpc(door, {"jsonrpc": "2.0", "id": 8, "method": "tasks/get", "params": {"id": tid}})
    check_v03_event(get["result"])
    assert get["result"]["status"]["state"] == "completed"


# -- malformed JSON-RPC ---------------------------------------------------------------------------

GOOD_MSG = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (b"{not json", "/a2a", -32700),
        (b"[]", "/a2a", -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}, "/a2a", -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "Nope"}, "/a2a", -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {}}}, "/a2a",
         -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
          "params": {"message": {**GOOD_MSG, "parts": []}, "metadata": {"skill": "chat"}}}, "/a2a",
         -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": GOOD_MSG}},
         "/a2a", -32602),  # two flows and no skill named
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
          "params": {"message": GOOD_MSG, "metadata": {"skill": "ghost"}}}, "/a2a", -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}, "/a2a/ghost",
         -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}, "/a2a", -32001),
        ({"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": "t"}}, "/a2a",
         -32001),
        ({"jsonrpc": "2.0", "id": 1, "method": "CancelTask", "params": {"id": "t"}}, "/a2a",
         -32001),
        ({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig", "params": {}},
         "/a2a", -32003),
        ({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {}}, "/a2a", -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
          "params": {"message": {**GOOD_MSG, "taskId": "nope"}}}, "/a2a/chat", -32001),
    ],
)  # fmt: skip
async def test_malformed_requests(door: Door, body: Any, path: str, code: int) -> None:
    obj = await rpc(door, body, path)
    assert obj["error"]["code"] == code, obj
    if code == -32602 and "ghost" in json.dumps(body) + path:
        assert "ghost" in obj["error"]["message"]


async def test_list_tasks(door: Door) -> None:
    client = await door.client(streaming=False)
    req = send_req("x")
    req.configuration.return_immediately = True
    async for resp in client.send_message(req):
        tid = resp.task.id
    listed = await client.list_tasks(pb.ListTasksRequest())
    assert [t.id for t in listed.tasks] == [tid]
    await client.close()


async def test_sdk_client_maps_our_errors(door: Door) -> None:
    client = await door.client()
    with pytest.raises(a2a_errors.InvalidParamsError, match="ghost"):
        async for _ in client.send_message(send_req("x", skill="ghost")):
            pass
    await client.close()


def test_v1_events_are_strict_protojson() -> None:
    # shapes.check_v1_event is what the door's renderings are held to (see test_core.py)
    check_v1_event({"statusUpdate": {"taskId": "t", "contextId": "c",
                                     "status": {"state": "TASK_STATE_WORKING"}}})  # fmt: skip


async def test_blocking_resume_and_v03_task_methods(door: Door) -> None:
    svc = door.service
    client = await door.client(streaming=False)
    req = send_req("deploy")
    req.configuration.return_immediately = True
    async for resp in client.send_message(req):
        tid = resp.task.id
    svc.report(tid, "running")
    svc.report(tid, "paused", pause={"prompt": "Approve?"})
    out: list[pb.StreamResponse] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def answer() -> None:
                async for resp in client.send_message(send_req("yes", task_id=tid)):
                    out.append(resp)

            tg.start_soon(answer)
            await svc.was_resumed.wait()
            svc.report(tid, "succeeded", result={"ok": True})
    (resp,) = out
    assert resp.task.status.state == DONE
    assert [m.parts[0].text for m in resp.task.history] == ["deploy", "yes"]
    await client.close()
    # v0.3 methods on the ended task, answered in v0.3 shapes
    get = await rpc(door, {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": tid}})
    check_v03_event(get["result"])
    for method, code in [("tasks/cancel", -32002), ("tasks/resubscribe", -32004)]:
        obj = await rpc(door, {"jsonrpc": "2.0", "id": 2, "method": method, "params": {"id": tid}})
        assert obj["error"]["code"] == code and "data" not in obj["error"]


async def test_a_refused_create_is_a_jsonrpc_error_naming_it() -> None:
    async with serve(MemService(actors=set())) as door:  # no actor has a queue
        body = {"jsonrpc": "2.0", "id": 3, "method": "SendMessage",
                "params": {"message": GOOD_MSG, "metadata": {"skill": "chat"}}}  # fmt: skip
        obj = await rpc(door, body)
    assert obj["id"] == 3 and obj["error"]["code"] == -32603
    assert "tokens" in obj["error"]["message"]  # the actor without a queue
