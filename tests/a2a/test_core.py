"""The pure core: message → payload, typed FLY shapes, the fold (mesh updates → A2A events and
the Task view) and the renderings, each checked with the SDK's own types in both versions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_gateway.a2a.model import (
    A2AArtifactUpdate,
    A2AEvent,
    A2AStatusUpdate,
    Artifact,
    TaskSnapshot,
    Version,
    render_task_v03,
    render_task_v1,
    render_v03,
    render_v1,
)
from asya_gateway.a2a.rpc import result_bytes
from asya_gateway.a2a.stream import sse_data
from asya_gateway.a2a.translate import (
    ArtifactFly,
    MessageFly,
    message_payload,
    norm_message,
    read_fly,
)
from asya_gateway.a2a.view import TaskA2A
from asya_gateway.a2a.wire import StreamWire
from asya_gateway.service import FlyUpdate, StatusUpdate, TaskView

from .shapes import check_v03_event, check_v1_event, check_v1_task

# -- message → payload ----------------------------------------------------------------------------


def _msg(*parts: Any, **kw: Any) -> dict[str, Any]:
    return norm_message({"messageId": "m1", "role": "ROLE_USER", "parts": list(parts), **kw})


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([{"text": "hello"}], {"query": "hello"}),
        ([{"text": "a"}, {"kind": "text", "text": "b"}], {"query": "a\nb"}),
        ([{"data": {"x": 1, "y": [1, 2]}}], {"x": 1, "y": [1, 2]}),
        ([{"kind": "data", "data": {"x": 1}}, {"text": "q"}], {"x": 1, "query": "q"}),
        ([{"data": {"x": 1}}, {"data": {"y": 2}}], {"x": 1, "y": 2}),
        ([{"data": [1, 2]}], {"data": [1, 2]}),
        ([{"url": "http://f/x.png", "mediaType": "image/png"}, {"text": "q"}], {"query": "q"}),
    ],
)
def test_message_to_payload(parts: list[Any], expected: dict[str, Any]) -> None:
    msg = _msg(*parts)
    payload = message_payload(msg, task_id="t1", context_id="c1")
    a2a = payload.pop("a2a")
    assert payload == expected
    assert a2a == {"task": {"id": "t1", "context_id": "c1", "history": [msg]}}


def test_message_payload_keeps_ints_exact() -> None:
    # through protobuf every number becomes a double; the payload is read from the raw JSON
    payload = message_payload(_msg({"data": {"n": 2**60 + 1}}), task_id="t", context_id="c")
    assert payload["n"] == 2**60 + 1 and isinstance(payload["n"], int)


def test_norm_message_either_version() -> None:
    v1 = norm_message(
        {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}], "taskId": "t"}
    )
    v0 = norm_message(
        {"message_id": "m", "role": "agent", "kind": "message", "task_id": "t",
         "parts": [{"kind": "text", "text": "x"}]}
    )  # fmt: skip
    assert v1 == v0 == {"messageId": "m", "role": "agent", "parts": [{"text": "x"}], "taskId": "t"}


def test_file_parts_both_ways() -> None:
    m = _msg(
        {
            "kind": "file",
            "file": {"uri": "http://x/a.txt", "name": "a.txt", "mimeType": "text/plain"},
        },
        {"kind": "file", "file": {"bytes": "aGk=", "mime_type": "text/plain"}},
    )
    assert m["parts"] == [
        {"url": "http://x/a.txt", "filename": "a.txt", "mediaType": "text/plain"},
        {"raw": "aGk=", "mediaType": "text/plain"},
    ]


# -- typed FLYs -----------------------------------------------------------------------------------

TEXT_PARTS = [{"text": "tok"}]


@pytest.mark.parametrize(
    ("fly", "expected"),
    [
        ({"partial": True, "text": "tok"}, ArtifactFly(artifact_id="stream", parts=TEXT_PARTS)),
        ({"step": 3}, ArtifactFly(artifact_id="events", parts=[{"data": {"step": 3}}])),
        (  # seed-000 style
            {"artifact_update": {"artifact": {"parts": [{"kind": "text", "text": "tok"}]}}},
            ArtifactFly(artifact_id="stream", parts=TEXT_PARTS),
        ),
        (  # camelCase, v1.0 parts, explicit id and flags
            {"artifactUpdate": {"artifact": {"artifactId": "code", "parts": [{"text": "tok"}]},
                                "append": True, "lastChunk": True}},
            ArtifactFly(artifact_id="code", parts=TEXT_PARTS, append=True, last_chunk=True),
        ),
        (  # upstream helper style: flat snake_case
            {"artifact_update": {"artifact_id": "code", "parts": [{"kind": "text", "text": "tok"}],
                                 "last_chunk": True, "name": "c"}},
            ArtifactFly(artifact_id="code", parts=TEXT_PARTS, last_chunk=True, name="c"),
        ),
    ],
)  # fmt: skip
def test_artifact_flys(fly: dict[str, Any], expected: ArtifactFly) -> None:
    assert read_fly(fly) == expected


AGENT_MSG = {"messageId": "", "role": "agent", "parts": [{"text": "Processing..."}]}
V1_PARTS = [{"text": "Processing..."}]
V03_PARTS = [{"kind": "text", "text": "Processing..."}]


@pytest.mark.parametrize(
    "fly",
    [
        {"status_update": {"state": "working", "message": {"role": "agent", "parts": V03_PARTS}}},
        {"status_update": {"status": {"state": "TASK_STATE_WORKING",
                                      "message": {"role": "ROLE_AGENT", "parts": V1_PARTS}}}},
        {"statusUpdate": {"status": {"message": {"parts": [{"text": "Processing..."}]}}}},
        {"message": {"role": "agent", "parts": V03_PARTS}},
    ],
)  # fmt: skip
def test_status_flys(fly: dict[str, Any]) -> None:
    assert read_fly(fly) == MessageFly(message=AGENT_MSG)


# -- the fold -------------------------------------------------------------------------------------


def _view(status: str, **kw: Any) -> TaskView:
    return TaskView(id="t1", status=status, updated_at="2026-12-01T00:00:00Z", **kw)


class Script:
    """Feeds numbered updates to a fold and keeps every event it emitted."""

    def __init__(self, **kw: Any) -> None:
        self.task = TaskA2A("t1", "c1", [_msg({"text": "hi"})], **kw)
        self.n = 0
        self.events: list[A2AEvent] = []

    def status(self, status: str, **kw: Any) -> list[A2AEvent]:
        self.n += 1
        return self._keep(self.task.apply(StatusUpdate(event_id=self.n, task=_view(status, **kw))))

    def fly(self, data: dict[str, Any]) -> list[A2AEvent]:
        self.n += 1
        return self._keep(self.task.apply(FlyUpdate(event_id=self.n, data=data)))

    def _keep(self, evs: list[A2AEvent]) -> list[A2AEvent]:
        for ev in evs:
            check_v1_event(render_v1(ev))
            check_v03_event(render_v03(ev))
        self.events.extend(evs)
        return evs


def _states(evs: list[A2AEvent]) -> list[str]:
    return [e.status.state for e in evs if isinstance(e, A2AStatusUpdate)]


def test_streaming_text_then_completed() -> None:
    s = Script()
    assert s.status("pending") == []
    assert _states(s.status("running")) == ["WORKING"]
    assert s.status("running", progress=0.5) == []  # progress: no event
    for tok in ["Hel", "lo", "!"]:
        s.fly({"partial": True, "text": tok})
    end = s.status("succeeded", result={"answer": 42})
    arts = [e for e in s.events if isinstance(e, A2AArtifactUpdate)]
    stream = [e for e in arts if e.artifact.artifact_id == "stream"]
    assert [e.append for e in stream] == [False, True, True, True]
    assert [e.last_chunk for e in stream] == [False, False, False, True]
    assert stream[-1].artifact.parts == []  # the seal carries no parts
    assert isinstance(end[-1], A2AStatusUpdate) and end[-1].status.state == "COMPLETED"
    result = [e for e in arts if e.artifact.artifact_id == "result"]
    assert len(result) == 1 and result[0].artifact.parts == [{"data": {"answer": 42}}]
    assert result[0].last_chunk and not result[0].append
    snap = s.task.snapshot()
    assert [(a.artifact_id, a.parts) for a in snap.artifacts] == [
        ("stream", [{"text": "Hello!"}]),
        ("result", [{"data": {"answer": 42}}]),
    ]
    assert s.fly({"text": "late"}) == [] and s.status("failed") == []  # nothing after terminal
    check_v1_task(render_task_v1(snap))
    check_v03_event(render_task_v03(snap))


def test_failed_seals_and_names_error() -> None:
    s = Script()
    s.status("running")
    s.fly({"text": "a"})
    evs = s.status("failed", error={"type": "ValueError", "message": "boom"})
    assert isinstance(evs[0], A2AArtifactUpdate) and evs[0].last_chunk
    last = evs[-1]
    assert isinstance(last, A2AStatusUpdate) and last.status.state == "FAILED" and last.final
    assert last.status.message is not None
    assert last.status.message["parts"] == [{"text": "ValueError: boom"}]
    assert render_v03(last)["final"] is True and render_v03(last)["status"]["state"] == "failed"


def test_canceled_has_no_artifact_events() -> None:
    s = Script()
    s.status("running")
    s.fly({"text": "a"})
    assert [type(e) for e in s.status("canceled")] == [A2AStatusUpdate]
    assert s.task.terminal


def test_paused_then_resumed() -> None:
    s = Script()
    s.status("running")
    evs = s.status("paused", pause={"prompt": "Approve?", "options": ["yes", "no"]})
    (ev,) = evs
    assert isinstance(ev, A2AStatusUpdate) and ev.status.state == "INPUT_REQUIRED" and ev.final
    msg = ev.status.message
    assert msg is not None and msg["role"] == "agent"
    assert msg["parts"] == [
        {"text": "Approve?"},
        {"data": {"prompt": "Approve?", "options": ["yes", "no"]}},
    ]
    assert render_v1(ev)["statusUpdate"]["status"]["message"]["role"] == "ROLE_AGENT"
    assert render_v03(ev)["status"]["state"] == "input-required"
    assert not s.task.terminal and s.task.final
    assert _states(s.status("running")) == ["WORKING"]
    assert not s.task.final


def test_typed_artifact_first_chunk_never_appends_and_one_last_chunk() -> None:
    s = Script()
    s.status("running")
    s.fly({"artifact_update": {"artifact": {"artifactId": "a", "parts": [{"text": "x"}]},
                               "append": True}})  # fmt: skip
    s.fly({"artifact_update": {"artifact_id": "a", "parts": [{"text": "y"}], "last_chunk": True}})
    s.fly({"artifact_update": {"artifact_id": "a", "parts": [{"text": "z"}]}})  # after the seal
    s.status("succeeded")
    a = [e for e in s.events if isinstance(e, A2AArtifactUpdate) and e.artifact.artifact_id == "a"]
    assert [(e.append, e.last_chunk) for e in a] == [(False, False), (True, True)]


def test_status_update_fly_stays_working() -> None:
    s = Script()
    s.status("running")
    (ev,) = s.fly({"status_update": {"state": "completed", "message": {"parts": [{"text": "hm"}]}}})
    assert isinstance(ev, A2AStatusUpdate) and ev.status.state == "WORKING" and not ev.final
    assert ev.status.message is not None and ev.status.message["messageId"] == "t1-2"


def test_fly_before_running_report_starts_working() -> None:
    s = Script()
    evs = s.fly({"text": "a"})
    assert [type(e) for e in evs] == [A2AStatusUpdate, A2AArtifactUpdate]


def test_view_is_bounded_and_says_truncated() -> None:
    s = Script(max_bytes=1000)
    s.status("running")
    for _ in range(100):
        assert len(s.fly({"text": "x" * 50})) == 1  # still streamed live
    snap = s.task.snapshot()
    assert snap.metadata == {"truncated": True}
    assert sum(len(p["text"]) for p in snap.artifacts[0].parts) < 1000
    assert render_task_v1(snap)["metadata"] == {"truncated": True}


# -- properties -----------------------------------------------------------------------------------

_text = st.text(max_size=8)
_parts = st.lists(
    st.one_of(
        st.builds(lambda t: {"kind": "text", "text": t}, _text),
        st.builds(lambda t: {"text": t}, _text),
        st.builds(lambda d: {"kind": "data", "data": d}, st.dictionaries(_text, st.integers())),
    ),
    max_size=3,
)
_fly = st.one_of(
    st.builds(lambda t: {"partial": True, "text": t}, _text),
    st.dictionaries(st.sampled_from(["step", "n", "x"]), st.integers(), max_size=2),
    st.builds(
        lambda aid, parts, app, last: {
            "artifact_update": {
                "artifact_id": aid,
                "parts": parts,
                "append": app,
                "last_chunk": last,
            }
        },
        st.sampled_from(["stream", "a", "b"]),
        _parts,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda parts: {"status_update": {"message": {"role": "agent", "parts": parts}}}, _parts
    ),
)
_step = st.one_of(
    st.tuples(st.just("fly"), _fly),
    st.tuples(st.sampled_from(["running", "paused", "pending"]), st.none()),
)
_end = st.sampled_from(["succeeded", "failed", "canceled"])


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_step, max_size=30), end=_end, bound=st.sampled_from([200, 1 << 20]))
def test_fold_invariants(steps: list[tuple[str, Any]], end: str, bound: int) -> None:
    s = Script(max_bytes=bound)
    for kind, data in steps:
        if kind == "fly":
            s.fly(data)
        else:
            s.status(kind, pause={"prompt": "?"} if kind == "paused" else None)
    s.status(end, result={"ok": True}, error={"message": "boom"})
    firsts: set[str] = set()
    sealed: dict[str, int] = {}
    for ev in s.events:
        if isinstance(ev, A2AArtifactUpdate):
            aid = ev.artifact.artifact_id
            assert aid not in sealed, f"chunk after lastChunk on {aid}"
            if aid not in firsts:
                assert ev.append is False, f"first chunk of {aid} appends"
                firsts.add(aid)
            if ev.last_chunk:
                sealed[aid] = 1
    last = s.events[-1]
    assert isinstance(last, A2AStatusUpdate)
    assert last.status.state in ("COMPLETED", "FAILED", "CANCELED")
    if end != "canceled":
        assert set(sealed) == firsts, "every artifact sealed exactly once"
    snap = s.task.snapshot()
    check_v1_task(render_task_v1(snap))
    check_v03_event(render_task_v03(snap))
    # what the view holds is what a client reassembles from the events (while not truncated)
    if not s.task.truncated:
        assembled: dict[str, str] = {}
        for ev in s.events:
            if isinstance(ev, A2AArtifactUpdate):
                txt = "".join(p.get("text", "") for p in ev.artifact.parts)
                prev = assembled.get(ev.artifact.artifact_id, "") if ev.append else ""
                assembled[ev.artifact.artifact_id] = prev + txt
        held = {a.artifact_id: "".join(p.get("text", "") for p in a.parts) for a in snap.artifacts}
        assert held == assembled


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.builds(lambda t: {"text": t}, _text),
            st.builds(lambda d: {"data": d}, st.dictionaries(_text, st.integers(), max_size=3)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_payload_properties(parts: list[dict[str, Any]]) -> None:
    msg = _msg(*parts)
    payload = message_payload(msg, task_id="t", context_id="c")
    texts = [p["text"] for p in parts if "text" in p]
    if texts:
        assert payload["query"] == "\n".join(texts)
    assert payload["a2a"]["task"]["history"] == [msg]
    msgspec.json.encode(payload)  # JSON all the way


def test_snapshot_event_renders_history() -> None:
    s = Script()
    snap = s.task.snapshot()
    assert isinstance(snap, TaskSnapshot)
    v1 = render_v1(snap)
    check_v1_event(v1)
    assert v1["task"]["status"]["state"] == "TASK_STATE_SUBMITTED"
    assert v1["task"]["history"][0]["role"] == "ROLE_USER"
    v0 = render_v03(snap)
    assert v0["kind"] == "task" and v0["history"][0]["parts"] == [{"kind": "text", "text": "hi"}]


def test_a_gap_in_event_ids_says_truncated() -> None:
    s = Script()
    s.status("running")
    s.fly({"text": "a"})
    s.n += 3  # three events never reached this fold (a slow subscriber's buffer dropped them)
    s.fly({"text": "b"})
    assert s.task.snapshot().metadata == {"truncated": True}


def test_no_gap_no_truncation() -> None:
    s = Script()
    s.status("running")
    for t in "abc":
        s.fly({"text": t})
    s.task.apply(StatusUpdate(event_id=0, task=_view("canceled")))  # learned directly: no id
    assert s.task.snapshot().metadata is None and s.task.terminal


# -- the stream's bytes ---------------------------------------------------------------------------

_ids = st.one_of(st.none(), st.integers(-(2**53), 2**53), st.text(max_size=6))
_wire_part = st.one_of(
    st.builds(lambda t: {"text": t}, st.text(max_size=8)),
    st.builds(lambda d: {"data": d}, st.one_of(st.integers(), st.dictionaries(_text, _text))),
    st.builds(lambda u: {"url": u, "filename": "f.txt", "mediaType": "text/plain"}, _text),
)
_artifact_update = st.builds(
    lambda tid, aid, parts, name, desc, meta, app, last: A2AArtifactUpdate(
        task_id=tid,
        context_id="c1",
        artifact=Artifact(artifact_id=aid, parts=parts, name=name, description=desc, metadata=meta),
        append=app,
        last_chunk=last,
    ),
    st.sampled_from(["t1", "other"]),
    st.text(max_size=6),
    st.lists(_wire_part, max_size=3),
    st.sampled_from(["", "answer", 'q"\n']),
    st.sampled_from(["", "d"]),
    st.sampled_from([None, {}, {"k": 1}]),
    st.booleans(),
    st.booleans(),
)


def _slow(rid: Any, version: Version, ev: A2AEvent) -> bytes:
    render = render_v1 if version == "1.0" else render_v03
    return sse_data(result_bytes(rid, render(ev)))


@settings(max_examples=300, deadline=None)
@given(
    rid=_ids,
    version=st.sampled_from(["1.0", "0.3"]),
    steps=st.lists(_step, max_size=12),
    extra=st.lists(_artifact_update, max_size=4),
)
def test_wire_bytes_are_the_rendered_events(
    rid: Any, version: Version, steps: list[tuple[str, Any]], extra: list[A2AEvent]
) -> None:
    s = Script()
    for kind, data in steps:
        if kind == "fly":
            s.fly(data)
        else:
            s.status(kind, pause={"prompt": "?"} if kind == "paused" else None)
    s.status("succeeded", result={"ok": True})
    wire = StreamWire(rid, version, "t1", "c1")
    events = [s.task.snapshot(), *s.events, *extra]
    for ev in events:
        assert wire.encode(ev) == _slow(rid, version, ev)
    assert wire.encode_all(events) == b"".join(_slow(rid, version, ev) for ev in events)


def test_wire_text_chunk_is_one_sse_event_the_sdk_reads() -> None:
    wire = StreamWire("r1", "1.0", "t1", "c1")
    ev = A2AArtifactUpdate(
        task_id="t1",
        context_id="c1",
        artifact=Artifact(artifact_id="stream", parts=[{"text": 'a "b"\n'}]),
        append=True,
    )
    raw = wire.encode(ev)
    assert raw.startswith(b"data: {") and raw.endswith(b"}\n\n") and raw.count(b"\n") == 2
    check_v1_event(msgspec.json.decode(raw[6:])["result"])


class _General(TaskA2A):
    fast_text = False


_texty = st.one_of(
    st.tuples(st.just("fly"), st.builds(lambda t: {"partial": True, "text": t}, _text)),
    st.tuples(st.just("fly"), st.builds(lambda t: {"text": t, "message": "not typed"}, _text)),
    _step,
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_texty, max_size=30), bound=st.sampled_from([120, 300, 1 << 20]))
def test_text_fast_path_folds_as_the_general_path(steps: list[tuple[str, Any]], bound: int) -> None:
    fast, general = TaskA2A("t1", "c1", max_bytes=bound), _General("t1", "c1", max_bytes=bound)
    for i, (kind, data) in enumerate([*steps, ("succeeded", None)], start=1):
        if kind == "fly":
            ups: list[Any] = [FlyUpdate(event_id=i, data=data)]
        else:
            ups = [StatusUpdate(event_id=i, task=_view(kind, result={"ok": True}))]
        for u in ups:
            assert fast.apply(u) == general.apply(u)
    assert fast.snapshot() == general.snapshot()
    assert (fast.size, fast.truncated) == (general.size, general.truncated)
