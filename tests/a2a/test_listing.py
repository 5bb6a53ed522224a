"""ListTasks over real HTTP with the official a2a-sdk client (the door over `MemService`): pages
without repeats or gaps, the filters, only A2A tasks, the page token refused when forged; and
the token's encode/decode as properties."""

from __future__ import annotations

import base64
import json
import math
import uuid
from typing import Any

import pytest
from a2a.client import Client
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_gateway.a2a.listing import (
    SCAN_BUDGET,
    PageToken,
    PageTokenError,
    decode_token,
    encode_token,
)

from .conftest import Door

SUBMITTED = pb.TaskState.TASK_STATE_SUBMITTED


def _send(text: str, context_id: str = "") -> pb.SendMessageRequest:
    msg = pb.Message(
        role=pb.Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[pb.Part(text=text)]
    )
    if context_id:
        msg.context_id = context_id
    req = pb.SendMessageRequest(
        message=msg, configuration=pb.SendMessageConfiguration(return_immediately=True)
    )
    req.metadata.update({"skill": "chat"})
    return req


async def _create(client: Client, text: str, context_id: str = "") -> pb.Task:
    async for resp in client.send_message(_send(text, context_id)):
        return resp.task
    raise AssertionError("no answer to SendMessage")


async def _all_pages(client: Client, **filters: Any) -> tuple[list[pb.ListTasksResponse], list]:
    pages: list[pb.ListTasksResponse] = []
    token = ""
    while True:
        page = await client.list_tasks(pb.ListTasksRequest(page_token=token, **filters))
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages, [t for p in pages for t in p.tasks]
        assert len(pages) < 50, "the token never ends"


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_pages_list_every_a2a_task_once_newest_first(door: Door) -> None:
    client = await door.client(streaming=False)
    made = [(await _create(client, f"t{i}")).id for i in range(7)]
    # A task of the same service that did not come through the A2A door is not an A2A task.
    await door.service.create(route=["x"], payload={"plain": True})
    pages, tasks = await _all_pages(client, page_size=3)
    assert [len(p.tasks) for p in pages] == [3, 3, 1]
    assert [t.id for t in tasks] == made[::-1]  # newest first, no repeats, no gaps
    assert [p.total_size for p in pages] == [3, 6, 7]  # listed so far; the last: all of them
    assert all(p.page_size == 3 for p in pages)
    first = tasks[-1]
    assert first.status.state == SUBMITTED and first.history[0].parts[0].text == "t0"
    assert not first.artifacts  # includeArtifacts is off by default
    # The defaults: 50 a page, everything on one page here.
    one = await client.list_tasks(pb.ListTasksRequest())
    assert [t.id for t in one.tasks] == made[::-1] and one.next_page_token == ""
    assert (one.page_size, one.total_size) == (50, 7)
    await client.close()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_context_status_and_history_filters(door: Door) -> None:
    client = await door.client(streaming=False)
    a = [(await _create(client, f"a{i}", "ctx-a")).id for i in range(3)]
    b = (await _create(client, "b", "ctx-b")).id
    door.service.report(a[1], "succeeded", result={"ok": 1})
    _, in_a = await _all_pages(client, context_id="ctx-a", page_size=2)
    assert [t.id for t in in_a] == a[::-1] and {t.context_id for t in in_a} == {"ctx-a"}
    _, in_b = await _all_pages(client, context_id="ctx-b")
    assert [t.id for t in in_b] == [b]
    _, none = await _all_pages(client, context_id="ctx-none")
    assert none == []
    done = await client.list_tasks(pb.ListTasksRequest(status=pb.TaskState.TASK_STATE_COMPLETED))
    assert [t.id for t in done.tasks] == [a[1]] and done.total_size == 1
    with_art = await client.list_tasks(
        pb.ListTasksRequest(context_id="ctx-a", include_artifacts=True, history_length=0)
    )
    by_id = {t.id: t for t in with_art.tasks}
    assert [x.artifact_id for x in by_id[a[1]].artifacts] == ["result"]
    assert all(len(t.history) == 0 for t in with_art.tasks)
    for stamp, expected in [("2000-01-01T00:00:00Z", 4), ("2999-01-01T00:00:00Z", 0)]:
        req = pb.ListTasksRequest()
        req.status_timestamp_after.FromJsonString(stamp)
        assert len((await client.list_tasks(req)).tasks) == expected, stamp
    await client.close()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_selective_filter_over_a_long_history_pages_on(door: Door) -> None:
    svc = door.service
    client = await door.client(streaming=False)
    wanted = (await _create(client, "needle", "ctx-rare")).id  # the oldest
    for i in range(SCAN_BUDGET + 50):  # newer tasks of another context
        ctx = {"task": {"id": f"h{i}", "context_id": "ctx-common", "history": []}}
        await svc.create(route=["tokens"], payload={"a2a": ctx}, task_id=f"h{i:05d}")
    pages, tasks = await _all_pages(client, context_id="ctx-rare")
    # One call reads at most SCAN_BUDGET tasks: an empty page with a token, then the task.
    assert [len(p.tasks) for p in pages] == [0, 1] and pages[0].next_page_token
    assert [t.id for t in tasks] == [wanted] and pages[-1].total_size == 1
    await client.close()


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pageToken": "not a token!"}, "pageToken"),
        ({"pageToken": "W10"}, "pageToken"),  # base64url of "[]"
        ({"pageSize": 101}, "pageSize"),
        ({"pageSize": -1}, "pageSize"),
        ({"historyLength": -2}, "historyLength"),
    ],
)
async def test_bad_params_are_invalid_params_naming_the_field(
    door: Door, params: dict[str, Any], named: str
) -> None:
    import httpx

    body = {"jsonrpc": "2.0", "id": 7, "method": "ListTasks", "params": params}
    async with httpx.AsyncClient() as http:
        r = await http.post(door.url + "/a2a", json=body)
    err = r.json()["error"]
    assert r.status_code == 200 and err["code"] == -32602 and named in err["message"], err
    assert "\n" not in err["message"]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_the_sdk_client_sees_a_forged_token_as_invalid_params(door: Door) -> None:
    client = await door.client(streaming=False)
    with pytest.raises(a2a_errors.InvalidParamsError, match="pageToken"):
        await client.list_tasks(pb.ListTasksRequest(page_token="AAAA"))
    await client.close()


# -- the page token -------------------------------------------------------------------------------

tokens = st.builds(
    PageToken,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(min_size=1, max_size=256),
    st.integers(min_value=0, max_value=2**62),
)


@given(tokens)
@settings(max_examples=300, deadline=None)
def test_token_round_trip(token: PageToken) -> None:
    text = encode_token(token)
    assert text.isascii() and "=" not in text and "+" not in text and "/" not in text
    back = decode_token(text)
    assert back == token
    assert math.copysign(1, back.created_at) == math.copysign(1, token.created_at)  # -0.0 too


def _refused_or_valid(text: str) -> None:
    try:
        token = decode_token(text)
    except PageTokenError as exc:
        assert "pageToken" in str(exc) and "\n" not in str(exc)
    else:  # garbage that happens to be a token must be a whole, valid one
        assert math.isfinite(token.created_at) and token.id and token.listed >= 0
        assert decode_token(encode_token(token)) == token


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_text_is_refused_or_a_valid_token(text: str) -> None:
    _refused_or_valid(text)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_base64url_bytes_are_refused_or_a_valid_token(raw: bytes) -> None:
    _refused_or_valid(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())))
@settings(max_examples=300, deadline=None)
def test_json_arrays_of_the_wrong_shape_are_refused(items: list[Any]) -> None:
    raw = json.dumps(items).encode()
    _refused_or_valid(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b'[1.0, "", 0]',  # empty id
        b'[1.0, "x", -1]',  # negative count
        b'[1e999, "x", 0]',  # infinite time
        b'["1.0", "x", 0]',
        b'[1.0, "x", 0, 4]',
        b'[1.0, "x"]',
        b"\xff\xfe",
    ],
)
def test_forged_tokens_are_refused(raw: bytes) -> None:
    with pytest.raises(PageTokenError, match="pageToken"):
        decode_token(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


def test_oversized_and_non_base64url_tokens_are_refused() -> None:
    for text in ["A" * 2000, "ab+c", "ab/c", "abc=", " abc", "é"]:
        with pytest.raises(PageTokenError):
            decode_token(text)
