"""Path parser and resolver: tables and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_runtime import paths
from asya_runtime.abi import Invocation
from asya_runtime.errors import AbiError
from asya_runtime.paths import Index, Key, Slice
from asya_runtime.testing import make_envelope


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        (".id", (Key("id"),)),
        (".headers.x-asya-fan-in", (Key("headers"), Key("x-asya-fan-in"))),
        ('.headers["model.config.version"]', (Key("headers"), Key("model.config.version"))),
        ('.headers.["a b"]', (Key("headers"), Key("a b"))),
        (".route.next[-1]", (Key("route"), Key("next"), Index(-1))),
        (".route.next[:0]", (Key("route"), Key("next"), Slice(None, 0))),
        (".route.next[1:3]", (Key("route"), Key("next"), Slice(1, 3))),
        (".route.next[2:]", (Key("route"), Key("next"), Slice(2, None))),
        ('.headers["q\\"uote"]', (Key("headers"), Key('q"uote'))),
        (".status.0abc", (Key("status"), Key("0abc"))),
    ],
)
def test_parse_table(path: str, steps: tuple[Any, ...]) -> None:
    assert paths.parse(path) == steps


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (".", "empty path"),
        ("", "must start with '.'"),
        ("headers", "must start with '.'"),
        (".headers..x", "expected a key"),
        (".headers[", "unclosed"),
        (".headers[x]", "bad bracket"),
        (".headers[1:2:3]", "bad bracket"),
        (".headers x", "unexpected"),
    ],
)
def test_parse_errors(path: str, message: str) -> None:
    with pytest.raises(AbiError, match=message):
        paths.parse(path)


def _inv(**kw: Any) -> Invocation:
    return Invocation(make_envelope({"p": 1}, **kw))


keys = st.text(alphabet="abcxyz-_09", min_size=1, max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda k: st.lists(k, max_size=3) | st.dictionaries(keys, k, max_size=3),
    max_leaves=8,
)


@given(
    root=st.sampled_from(["headers", "status"]),
    ks=st.lists(keys, min_size=1, max_size=4),
    value=values,
    bracket=st.booleans(),
)
def test_set_then_get_returns_the_value(
    root: str, ks: list[str], value: Any, bracket: bool
) -> None:
    inv = _inv()
    path = f".{root}" + "".join(f'["{k}"]' if bracket else f".{k}" for k in ks)
    inv.step(("SET", path, value))
    got = inv.step(("GET", path))[1]
    assert got == value
    if isinstance(got, dict | list):  # GET is a copy
        got.clear()
        assert inv.step(("GET", path))[1] == value


@given(value=st.lists(st.text(min_size=1, max_size=3), max_size=4))
def test_set_stores_a_deep_copy(value: list[str]) -> None:
    inv = _inv()
    src = {"list": list(value)}
    inv.step(("SET", ".headers.x", src))
    src["list"].append("mutated")
    assert inv.step(("GET", ".headers.x"))[1] == {"list": value}


denied = st.sampled_from(
    [
        ".id",
        ".parent_id",
        ".route",
        ".route.prev",
        ".route.prev[0]",
        ".route.curr",
        ".payload",
        ".other",
        ".route.x",
    ]
)


@given(path=denied, verb=st.sampled_from(["SET", "DEL"]), value=values)
def test_denied_paths_are_always_refused(path: str, verb: str, value: Any) -> None:
    inv = _inv(route=["a", "b", "c"], headers={"h": 1})
    before = {k: v for k, v in inv.meta.items()}
    y = ("SET", path, value) if verb == "SET" else ("DEL", path)
    with pytest.raises(AbiError):
        inv.step(y)
    assert inv.meta == before


def test_del_status_itself_is_refused_but_under_it_allowed() -> None:
    inv = _inv(status={"a": 1, "b": 2})
    with pytest.raises(AbiError, match="cannot be deleted"):
        inv.step(("DEL", ".status"))
    inv.step(("DEL", ".status.a"))
    assert inv.meta["status"] == {"b": 2}


lists = st.lists(st.text(alphabet="abc", min_size=1, max_size=2), max_size=6)
bounds = st.none() | st.integers(-8, 8)


@given(start=lists, a=bounds, b=bounds, new=lists)
def test_slice_set_behaves_like_python(
    start: list[str], a: int | None, b: int | None, new: list[str]
) -> None:
    inv = _inv(route=["cur", *start])
    sa = "" if a is None else str(a)
    sb = "" if b is None else str(b)
    inv.step(("SET", f".route.next[{sa}:{sb}]", new))
    expected = list(start)
    expected[a:b] = new
    assert inv.meta["route"]["next"] == expected


@given(start=lists, i=st.integers(-8, 8))
def test_index_get_and_del_like_python(start: list[str], i: int) -> None:
    inv = _inv(route=["cur", *start])
    inside = -len(start) <= i < len(start)
    assert inv.step(("GET", f".route.next[{i}]"))[1] == (start[i] if inside else None)
    inv.step(("DEL", f".route.next[{i}]"))
    expected = list(start)
    if inside:
        del expected[i]
    assert inv.meta["route"]["next"] == expected


@pytest.mark.parametrize("bad", [["ok", ""], ["ok", 3], "notalist", [None]])
def test_route_next_must_be_non_empty_strings(bad: Any) -> None:
    inv = _inv(route=["a", "b"])
    with pytest.raises(AbiError, match="non-empty strings"):
        inv.step(("SET", ".route.next", bad))
    assert inv.meta["route"]["next"] == ["b"]


def test_get_semantics_for_missing_and_wrong_kinds() -> None:
    inv = _inv(route=["a", "b"], headers={"h": {"x": 1}})
    assert inv.step(("GET", ".headers.nope"))[1] is None
    assert inv.step(("GET", ".headers.nope.deeper"))[1] is None
    assert inv.step(("GET", ".id"))[1] is None
    assert inv.step(("GET", ".route.curr"))[1] == "a"
    assert inv.step(("GET", '.route["next"]'))[1] == ["b"]
    with pytest.raises(AbiError):
        inv.step(("GET", ".route.curr.x"))
    with pytest.raises(AbiError, match="slice"):
        inv.step(("GET", ".route.next[0:1]"))
    with pytest.raises(AbiError, match="payload"):
        inv.step(("GET", ".payload"))


def test_set_creates_intermediate_maps_and_del_empties_roots() -> None:
    inv = _inv(route=["a", "b"], headers={"k": 1})
    inv.step(("SET", ".headers.a.b.c", 1))
    assert inv.meta["headers"] == {"k": 1, "a": {"b": {"c": 1}}}
    inv.step(("DEL", ".headers"))
    assert inv.meta["headers"] == {}
    inv.step(("DEL", ".route.next"))
    assert inv.meta["route"]["next"] == []
    inv.step(("DEL", ".headers.missing.x"))  # no-op
    with pytest.raises(AbiError, match="must be a map"):
        inv.step(("SET", ".headers", [1]))
