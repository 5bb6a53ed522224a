"""End to end with the official a2a-sdk client against `asya dev`: the real gateway, runtime,
sidecar, x-sink and x-sump processes, flow `dev` (one actor running tests/a2a/handlers.py).

These need the integrated gateway (the A2A door mounted in its app): while it is not mounted
they skip locally and fail under CI (the card answers 404).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors
from google.protobuf.json_format import ParseDict

from ..conftest import console_script
from .conftest import free_port
from .shapes import check_response, check_v03_event

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(120)]

DONE = pb.TaskState.TASK_STATE_COMPLETED


@pytest.fixture(scope="module")
def dev_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`asya dev --route a2a` (flow `dev`), shared by this module's tests."""
    import shutil
    import tempfile

    from ..conftest import ROOT

    workdir = tempfile.mkdtemp(prefix="asya-a2a-", dir="/tmp")
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [console_script("asya"), "dev", "--route", "a2a", "--actor",
         "a2a=tests.a2a.handlers:act", "--port", str(port), "--dir", workdir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "open http://" in line:
                break
        else:
            pytest.fail(f"asya dev ended before the mesh was ready (code {proc.wait()})")
        url = f"http://127.0.0.1:{port}"
        if httpx.get(url + "/.well-known/agent-card.json").status_code == 404:
            if os.environ.get("CI"):
                pytest.fail("the gateway does not mount the A2A door (card 404)")
            pytest.skip("the gateway does not mount the A2A door yet (needs the integration)")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(Path(workdir), ignore_errors=True)


def send(data: dict[str, Any] | None = None, text: str = "", task_id: str = "") -> Any:
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"text": text})
    if data is not None:
        parts.append({"data": data})
    msg = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": parts}
    if task_id:
        msg["taskId"] = task_id
    return ParseDict({"message": msg}, pb.SendMessageRequest())


def kind(ev: pb.StreamResponse) -> str:
    return str(ev.WhichOneof("payload"))


async def test_streaming_text_live(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=True)).create_from_url(dev_url)
    words = [f"w{i}" for i in range(12)]
    got: list[tuple[float, pb.StreamResponse]] = []
    with anyio.fail_after(60):
        async for ev in client.send_message(send({"query": " ".join(words), "token_delay": 0.1})):
            got.append((anyio.current_time(), ev))
    # the iterator ended by itself, right after COMPLETED
    assert got[-1][1].status_update.status.state == DONE
    chunks = [(t, e.artifact_update) for t, e in got if kind(e) == "artifact_update"]
    stream = [(t, a) for t, a in chunks if a.artifact.artifact_id == "stream"]
    assert stream[0][1].append is False and all(a.append for _, a in stream[1:])
    assert sum(a.last_chunk for _, a in stream) == 1
    text = "".join(p.text for _, a in stream for p in a.artifact.parts)
    assert text == " ".join(words)
    # live: the chunks arrived spread over the handler's delays, not in one burst at the end
    with_text = [t for t, a in stream if a.artifact.parts]
    assert with_text[-1] - with_text[0] > 0.5 * 0.1 * (len(words) - 1)
    tid = got[0][1].task.id
    task = await client.get_task(pb.GetTaskRequest(id=tid))
    assert {a.artifact_id for a in task.artifacts} >= {"stream", "result"}
    await client.close()


async def test_reconnect_and_two_subscribers(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=True)).create_from_url(dev_url)
    words = [f"t{i}" for i in range(15)]
    seen: list[str] = []
    with anyio.fail_after(60):
        stream = client.send_message(send({"query": " ".join(words), "token_delay": 0.1}))
        tid = ""
        async for ev in stream:
            if kind(ev) == "task":
                tid = ev.task.id
            if kind(ev) == "artifact_update":
                seen += [p.text for p in ev.artifact_update.artifact.parts]
            if len(seen) >= 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        logs: list[list[str]] = [[], []]

        async def sub(i: int) -> None:
            async for ev in client.subscribe(pb.SubscribeToTaskRequest(id=tid)):
                if kind(ev) == "task":
                    logs[i].append(
                        "T:" + "".join(p.text for a in ev.task.artifacts for p in a.parts)
                    )
                elif kind(ev) == "artifact_update":
                    logs[i] += [p.text for p in ev.artifact_update.artifact.parts]
                else:
                    logs[i].append(f"S:{ev.status_update.status.state}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(sub, 0)
            tg.start_soon(sub, 1)
    for log in logs:
        assert log[-1] == f"S:{DONE}"
        snap = log[0][2:]
        live = "".join(x for x in log[1:] if not x.startswith("S:"))
        assert snap.startswith("".join(seen)) and snap + live == " ".join(words), log
    await client.close()


async def test_failing_handler_fails_with_message(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=True)).create_from_url(dev_url)
    with anyio.fail_after(60):
        events = [ev async for ev in client.send_message(send({"fail": "kaboom"}))]
    st = events[-1].status_update.status
    assert st.state == pb.TASK_STATE_FAILED and "kaboom" in st.message.parts[0].text
    await client.close()


async def test_cancel(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=True)).create_from_url(dev_url)
    with anyio.fail_after(60):
        stream = client.send_message(send({"query": "a b c d e f g h", "token_delay": 1}))
        first = await anext(stream)  # type: ignore[call-overload]
        tid = first.task.id
        task = await client.cancel_task(pb.CancelTaskRequest(id=tid))
        assert task.status.state == pb.TASK_STATE_CANCELED
        rest = [ev async for ev in stream]
    assert rest[-1].status_update.status.state == pb.TASK_STATE_CANCELED
    with pytest.raises(a2a_errors.TaskNotCancelableError):
        await client.cancel_task(pb.CancelTaskRequest(id=tid))
    await client.close()


async def test_silent_flow_longer_than_client_read_timeout(dev_url: str) -> None:
    http = httpx.AsyncClient(timeout=3.0)
    client = await ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create_from_url(
        dev_url
    )
    with anyio.fail_after(60):
        events = [ev async for ev in client.send_message(send({"silence": 6}))]
    assert events[-1].status_update.status.state == DONE
    await client.close()
    await http.aclose()


async def test_non_streaming_send(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=False)).create_from_url(dev_url)
    with anyio.fail_after(60):
        (resp,) = [r async for r in client.send_message(send({"query": "one two"}))]
    assert resp.task.status.state == DONE
    await client.close()


async def test_pause_and_resume(dev_url: str) -> None:
    client = await ClientFactory(ClientConfig(streaming=True)).create_from_url(dev_url)
    with anyio.fail_after(60):
        events = [ev async for ev in client.send_message(send({"pause": True}))]
        st = events[-1].status_update.status
        assert st.state == pb.TASK_STATE_INPUT_REQUIRED and st.message.parts[0].text == "Approve?"
        tid = events[0].task.id
        after = [ev async for ev in client.send_message(send(text="yes", task_id=tid))]
    assert after[-1].status_update.status.state == DONE
    task = await client.get_task(pb.GetTaskRequest(id=tid))
    result = next(a for a in task.artifacts if a.artifact_id == "result")
    assert result.parts[0].data.struct_value["query"] == "yes"
    await client.close()


async def test_v03_wire_and_malformed(dev_url: str) -> None:
    body = {
        "jsonrpc": "2.0", "id": "r1", "method": "message/stream",
        "params": {"message": {"kind": "message", "role": "user", "messageId": "m1",
                               "parts": [{"kind": "data", "data": {"query": "x y"}}]}},
    }  # fmt: skip
    results = []
    async with httpx.AsyncClient(timeout=30) as http:
        with anyio.fail_after(60):
            async with http.stream("POST", dev_url + "/a2a", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        obj = json.loads(line[6:])
                        check_response(obj)
                        results.append(check_v03_event(obj["result"]))
        assert results[-1].status.state.value == "completed" and results[-1].final is True
        for raw, code in [
            (b"{", -32700),
            (b'{"jsonrpc":"2.0","id":1,"method":"Nope"}', -32601),
            (b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{}}}', -32602),
        ]:
            obj = (await http.post(dev_url + "/a2a", content=raw)).json()
            check_response(obj)
            assert obj["error"]["code"] == code
        get = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
        r = await http.post(dev_url + "/a2a/ghost", json=get)
        assert r.status_code == 200 and "ghost" in r.json()["error"]["message"]
