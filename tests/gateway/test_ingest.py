"""Pure tests: event parsing (single, batch, legacy) into the typed mesh events, the seam with
the sidecar's encoder, and SSE encoding tables."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_dev.render import SseEvent, SseParser
from asya_gateway.ingest import (
    BadEvent,
    parse_events,
    parse_legacy_final,
    parse_legacy_fly,
    parse_legacy_progress,
    parse_task_events,
)
from asya_gateway.sse import encode_comment, encode_sse, fly_event_name
from asya_mesh.events import (
    EVENT_STATUSES,
    Event,
    FlyEvent,
    StatusData,
    StatusEvent,
    encode_events,
)
from asya_sidecar import reports
from asya_sidecar.forwarder import EnvelopeEvents, Pending
from asya_sidecar.link import tagged
from asya_sidecar.metrics import Metrics


def FlyIn(data: bytes, name: str = "partial") -> FlyEvent:  # reads as the old type
    return FlyEvent(data=msgspec.Raw(data))


def StatusIn(status: str, data: dict[str, object]) -> StatusEvent:
    return StatusEvent(status=status, data=msgspec.convert(data, StatusData))


@pytest.mark.parametrize(
    ("name", "data", "eid", "expected"),
    [
        ("partial", b'{"a":1}', 3, b'id: 3\nevent: partial\ndata: {"a":1}\n\n'),
        ("update", b"{}", 0, b"id: 0\nevent: update\ndata: {}\n\n"),
        (None, b"x", None, b"data: x\n\n"),
        ("m", b"a\nb", None, b"event: m\ndata: a\ndata: b\n\n"),
        ("m", b"a\r\nb\rc", None, b"event: m\ndata: a\ndata: b\ndata: c\n\n"),
        ("m", b"", 1, b"id: 1\nevent: m\ndata: \n\n"),
    ],
)
def test_encode_sse(name: str | None, data: bytes, eid: int | None, expected: bytes) -> None:
    assert encode_sse(name, data, eid) == expected


def test_encode_sse_rejects_multiline_event_name() -> None:
    with pytest.raises(ValueError, match="single line"):
        encode_sse("a\nb", b"{}")


def test_encode_comment() -> None:
    assert encode_comment("keepalive") == b": keepalive\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"


@pytest.mark.parametrize(
    ("fly", "name"),
    [
        ({"partial": True, "text": "x"}, "partial"),
        ({"artifact_update": {}}, "artifact_update"),
        ({"status_update": {}}, "status_update"),
        ({"message": {"role": "agent"}}, "message"),
        ({"message": "hi", "stage": "x"}, "partial"),  # not the ONE top-level key
        ({}, "partial"),
    ],
)
def test_fly_event_name(fly: dict[str, object], name: str) -> None:
    assert fly_event_name(fly) == name


def test_parse_single_and_batch() -> None:
    assert parse_events(b'{"type": "fly", "data": {"text": "a"}}') == [FlyIn(b'{"text": "a"}')]
    got = parse_events(
        b'[{"type":"fly","data":{"message":{"x":1}}},'
        b'{"type":"status","status":"received","data":{"prev":[],"curr":"a","next":[]}}]'
    )
    assert got == [
        FlyIn(b'{"message":{"x":1}}', "message"),
        StatusIn("received", {"prev": [], "curr": "a", "next": []}),
    ]
    assert parse_events(b'{"type":"status","status":"succeeded"}') == [StatusIn("succeeded", {})]
    assert parse_events(b"[]") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"{", "malformed JSON"),
        (b'{"type": "nope"}', "`$.type`"),
        (b'{"data": {}}', "missing required field `type`"),
        (b'{"type": "fly", "data": 3}', "FLY `data` must be an object"),
        (b'{"type": "fly"}', "FLY `data` must be an object"),
        (b'[{"type": "status"}]', "without `status` - at `$[0]`"),
        (b'[{"type":"fly","data":{}},{"type":"status","status":"weird"}]', "$[1].status"),
        (b'{"type": "status", "status": "failed", "data": []}', "`data` must be an object"),
        (b'{"type":"fly","data":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (
            b'{"type":"status","status":"failed","data":{"e":' + b"[" * 5000 + b"]" * 5000 + b"}}",
            "nested too deeply",
        ),
        (b"42", "Expected `object | array`"),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(BadEvent) as info:
        parse_events(body)
    assert reason in str(info.value)


def test_legacy_forms() -> None:
    assert parse_legacy_fly(b' {"text": "a"} ') == FlyIn(b'{"text": "a"}')
    with pytest.raises(BadEvent):
        parse_legacy_fly(b"[1]")
    p = parse_legacy_progress(
        b'{"prev":["a"],"curr":"b","next":[],"status":"processing","message":"m"}'
    )
    assert p == StatusIn("processing", {"prev": ["a"], "curr": "b", "next": []})
    f = parse_legacy_final(b'{"id":"x","status":"failed","error":"boom"}')
    assert f.status == "failed" and f.data.error == "boom"
    with pytest.raises(BadEvent, match="unknown status"):
        parse_legacy_progress(b'{"status":"dancing"}')


_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1).filter(
    lambda s: s.strip() == s and ":" not in s[:1]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(name=_names, data=st.dictionaries(st.text(), _json, max_size=5), eid=st.integers(0, 10**9))
def test_sse_round_trip_through_a_client_parser(
    name: str, data: dict[str, object], eid: int
) -> None:
    raw = msgspec.json.encode(data)
    events = _parse(encode_sse(name, raw, eid))
    assert len(events) == 1
    assert events[0].event == name and events[0].id == str(eid)
    assert msgspec.json.decode(events[0].data) == data


def _parse(stream: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [ev for line in stream.decode().split("\n") for ev in parser.feed(line)]


def test_typed_fields_are_kept_and_checked() -> None:
    (f,) = parse_events(b'{"type":"fly","data":{"text":"a"},"seq":4,"n":2}')
    assert isinstance(f, FlyEvent) and (f.seq, f.n) == (4, 2)
    (s,) = parse_events(b'{"type":"status","status":"succeeded","data":{"flies":3,"result":null}}')
    assert isinstance(s, StatusEvent) and s.data.flies == 3 and s.data.result is None
    with pytest.raises(BadEvent, match=r"`\$\[1\]\.data\.flies`"):
        parse_events(
            b'[{"type":"fly","data":{}},{"type":"status","status":"failed","data":{"flies":"x"}}]'
        )
    with pytest.raises(BadEvent, match="`seq` must be >= 0"):
        parse_events(b'{"type":"fly","data":{},"seq":-1}')


def test_unknown_status_is_refused_by_the_shared_type() -> None:
    assert "paused" in EVENT_STATUSES and "dancing" not in EVENT_STATUSES
    with pytest.raises(
        msgspec.ValidationError, match=r"Invalid enum value 'dancing' - at `\$.status`"
    ):
        msgspec.json.decode(b'{"type":"status","status":"dancing"}', type=StatusEvent)
    for body in (b'{"type":"status","status":"dancing"}', b'{"id":"x","status":"dancing"}'):
        with pytest.raises(BadEvent, match=r"unknown status 'dancing' - at `\$.status`"):
            (parse_events if b"type" in body else parse_legacy_final)(body)


def test_status_with_null_data_reads_as_no_data() -> None:
    body = b'[{"type":"fly","data":{"a":1}},{"type":"status","status":"failed","data":null}]'
    assert parse_events(body) == [FlyIn(b'{"a":1}'), StatusIn("failed", {})]


# The seam from both ends: what the sidecar's constructors and encoders produce, the gateway
# parses back to equal Structs (the same classes, `asya_mesh.events`).
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_fly = st.builds(
    reports.fly, st.dictionaries(_text, _value, max_size=4), st.none() | st.integers(0, 10**9)
)
_status_fields = st.fixed_dictionaries(
    {},
    optional={
        "prev": st.lists(_text, max_size=3),
        "curr": _text,
        "next": st.lists(_text, max_size=3),
        "actor": _text,
        "duration_ms": st.integers(0, 10**6),
        "id": _text,
        "status": _text,
        "timestamp": _text,
        "progress": st.floats(0, 1),
        "result": _value,
        "error": _text,
        "error_details": _value,
        "current_actor_idx": st.integers(0, 10),
        "current_actor_name": _text,
        "flies": st.integers(0, 10**6),
        "envelope": st.dictionaries(_text, _value, max_size=3),
        "pause": st.dictionaries(_text, _value, max_size=3),
    },
)
_status = st.builds(
    lambda state, fields: reports.status_event(state, **fields),
    st.sampled_from(sorted(EVENT_STATUSES)),
    _status_fields,
)
_events = st.lists(_fly | _status, min_size=1, max_size=6)
_metrics = Metrics("memory")


@given(events=_events)
def test_sidecar_encoded_events_parse_back_equal(events: list[Event]) -> None:
    assert parse_events(encode_events(events)) == events
    assert parse_events(encode_events(events[:1])) == events[:1]  # a single object


@given(items=st.lists(st.tuples(st.sampled_from(["a", "b"]), _fly | _status), min_size=1))
def test_sidecar_many_task_batch_parses_back_equal(items: list[tuple[str, Event]]) -> None:
    body = (
        b"["
        + b",".join(tagged(Pending(EnvelopeEvents(None, _metrics, t), e)) for t, e in items)
        + b"]"
    )
    runs = parse_task_events(body)
    assert [(t, e) for t, evs in runs for e in evs] == items
