"""The pure ABI step: dispatch table, route shift, typed values, error frames."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_runtime.abi import Invocation, error_frame
from asya_runtime.errors import AbiError
from asya_runtime.jsonable import to_jsonable
from asya_runtime.testing import make_envelope
from asya_runtime.wire import Emit, Fly

names = st.text(alphabet="abcdef", min_size=1, max_size=4)
routes = st.lists(names, min_size=1, max_size=5)
json_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=5),
    lambda k: st.lists(k, max_size=3) | st.dictionaries(st.text(max_size=4), k, max_size=3),
    max_leaves=10,
)


def _inv(route: list[str], **kw: Any) -> Invocation:
    return Invocation(make_envelope(None, route=route, **kw))


yields = st.one_of(
    st.none().map(lambda _: ("none", None)),
    st.dictionaries(st.text(max_size=4), json_data, max_size=3).map(lambda d: ("fly", ("FLY", d))),
    st.sampled_from([".route.next", ".headers.h", ".id"]).map(lambda p: ("get", ("GET", p))),
    st.tuples(st.just("SET"), st.just(".headers.h"), json_data).map(lambda t: ("set", t)),
    st.just(("del", ("DEL", ".headers.h"))),
    st.one_of(
        st.tuples(
            st.text(max_size=4).filter(lambda v: v not in {"FLY", "GET", "SET", "DEL"}), json_data
        ),
        st.just(()),
        st.just(("FLY",)),
        st.just(("FLY", "not a dict")),
        st.just(("SET", ".headers.h")),
        st.just(("GET", ".id", 1)),
    ).map(lambda t: ("bad", t)),
    json_data.filter(lambda v: v is not None).map(lambda v: ("emit", v)),
)


@given(route=routes, items=st.lists(yields, max_size=8))
def test_dispatch_table(route: list[str], items: list[tuple[str, Any]]) -> None:
    inv = _inv(route)
    for kind, value in items:
        if kind == "bad":
            with pytest.raises(AbiError, match="ABI protocol error"):
                inv.step(value)
            continue
        frame, reply = inv.step(value)
        if kind in ("none", "set", "del"):
            assert frame is None and reply is None
        elif kind == "fly":
            assert frame == Fly(data=value[1]) and reply is None
        elif kind == "get":
            assert frame is None
        else:
            assert isinstance(frame, Emit) and frame.payload == value and reply is None


@given(route=routes, new_next=st.lists(st.lists(names, max_size=3), min_size=1, max_size=4))
def test_route_shift_invariants(route: list[str], new_next: list[list[str]]) -> None:
    inv = _inv(route)
    first = inv.step({"n": 0})[0]
    assert isinstance(first, Emit)
    assert first.route.prev == [route[0]]
    assert first.route.curr == (route[1] if len(route) > 1 else "")
    assert first.route.next == route[2:]
    for i, nxt in enumerate(new_next, 1):
        inv.step(("SET", ".route.next", nxt))
        frame = inv.step({"n": i})[0]
        assert isinstance(frame, Emit)
        # always shifted from the *input* route, with the current .route.next
        assert frame.route.prev == [route[0]]
        assert frame.route.curr == (nxt[0] if nxt else "")
        assert frame.route.next == nxt[1:]


def test_set_between_yields_changes_only_later_frames() -> None:
    inv = _inv(["a", "b"], headers={"x": 1})
    f1 = inv.step({"i": 1})[0]
    inv.step(("SET", ".headers.x", 2))
    inv.step(("SET", ".status.phase", "p"))
    f2 = inv.step({"i": 2})[0]
    assert f1.headers == {"x": 1} and f1.status == {}  # type: ignore[union-attr]
    assert f2.headers == {"x": 2} and f2.status == {"phase": "p"}  # type: ignore[union-attr]


def test_emitted_payload_is_a_snapshot() -> None:
    inv = _inv(["a"])
    p = {"items": [1]}
    f = inv.step(p)[0]
    p["items"].append(2)
    assert f.payload == {"items": [1]}  # type: ignore[union-attr]


def test_function_result() -> None:
    inv = _inv(["a", "b"])
    assert inv.result(None) is None
    f = inv.result([1, 2])
    assert isinstance(f, Emit) and f.payload == [1, 2]  # a list is one payload


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


class FakeModelV2:
    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        assert mode == "json"
        return {"v": 2, "u": uuid.UUID(int=1)}


class FakeModelV1:
    __fields__: ClassVar[dict[str, Any]] = {"a": None}

    def dict(self) -> dict[str, Any]:
        return {"v": 1}


def test_typed_values_are_converted_as_upstream() -> None:
    value = {
        "dc": Point(1, dt.date(2024, 1, 2)),
        "m2": FakeModelV2(),
        "m1": FakeModelV1(),
        "dt": dt.datetime(2024, 1, 2, 3, 4, 5),
        "t": dt.time(1, 2),
        "u": uuid.UUID(int=5),
        "d": decimal.Decimal("1.50"),
        "s": {3},
        "fs": frozenset({"a"}),
        "b": b"\x00hi",
    }
    out = to_jsonable(value)
    assert out == {
        "dc": {"x": 1, "when": "2024-01-02"},
        "m2": {"v": 2, "u": str(uuid.UUID(int=1))},
        "m1": {"v": 1},
        "dt": "2024-01-02T03:04:05",
        "t": "01:02:00",
        "u": str(uuid.UUID(int=5)),
        "d": "1.50",
        "s": [3],
        "fs": ["a"],
        "b": "AGhp",
    }
    json.dumps(out)


def test_unconvertible_value_names_its_type() -> None:
    class Opaque:
        pass

    inv = _inv(["a"])
    with pytest.raises(TypeError, match="Opaque"):
        inv.step({"x": Opaque()})
    with pytest.raises(TypeError, match="Opaque"):
        inv.step(("FLY", {"x": Opaque()}))


def test_error_frame_type_and_mro() -> None:
    try:
        json.loads("{")
    except ValueError as exc:
        f = error_frame(exc)
    assert f.code == "processing_error"
    assert f.type == "json.decoder.JSONDecodeError"
    assert f.mro == ["ValueError", "Exception"]
    assert "Traceback" in f.traceback
    k = error_frame(KeyError("k"))
    assert (k.type, k.mro) == ("KeyError", ["LookupError", "Exception"])
    a = error_frame(AbiError("ABI protocol error: x"))
    assert a.code == "processing_error" and a.type == "asya_runtime.errors.AbiError"


# -- migrating from upstream (issue 14) --------------------------------------------------------


@dataclasses.dataclass
class Token:
    text: str
    at: dt.datetime


UTC_NOON = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "data"),
    [
        (Token("hi", UTC_NOON), {"text": "hi", "at": "2024-06-01T12:00:00+00:00"}),
        (FakeModelV2(), {"v": 2, "u": str(uuid.UUID(int=1))}),
        (FakeModelV1(), {"v": 1}),
    ],
)
def test_fly_accepts_any_value_that_converts_to_a_json_object(value: Any, data: Any) -> None:
    frame, reply = _inv(["a"]).step(("FLY", value))
    assert frame == Fly(data=data) and reply is None


def test_fly_accepts_a_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Progress(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        done: int
        total: int

    frame, _ = _inv(["a"]).step(("FLY", Progress(done=1, total=3)))
    assert frame == Fly(data={"done": 1, "total": 3})


class Opaque:
    pass


@pytest.mark.parametrize("value", [[1, 2], "text", 5, None, Opaque(), {1, 2}])
def test_fly_refuses_values_that_are_not_json_objects(value: Any) -> None:
    with pytest.raises(AbiError, match=r"ABI protocol error: FLY must be yielded as \(\"FLY\""):
        _inv(["a"]).step(("FLY", value))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (UTC_NOON, "2024-06-01T12:00:00+00:00"),
        (
            dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC),
            "2024-06-01T12:00:00.123456+00:00",
        ),
        (
            dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-06-01T12:00:00+02:00",
        ),
        (dt.datetime(2024, 6, 1, 12, 0), "2024-06-01T12:00:00"),
        (dt.time(8, 30, tzinfo=dt.UTC), "08:30:00+00:00"),
        (dt.date(2024, 6, 1), "2024-06-01"),
    ],
)
def test_datetimes_are_written_like_upstreams_isoformat(value: Any, text: str) -> None:
    assert text == value.isoformat()
    inv = _inv(["a"])
    emit = inv.step({"when": value, "nested": [{"at": value}]})[0]
    assert emit.payload == {"when": text, "nested": [{"at": text}]}  # type: ignore[union-attr]
    assert inv.step(("FLY", {"when": value}))[0] == Fly(data={"when": text})
    assert to_jsonable(value) == text
