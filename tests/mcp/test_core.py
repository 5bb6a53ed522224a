"""The MCP door's pure core: tools from flows, argument checks naming the field, FLY → progress,
finished task → tool result. Tables for the shapes, hypothesis for the mappings."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.flows import Flow, Flows, parse_flow
from asya_gateway.mcp.core import (
    ArgumentsRefused,
    CallState,
    ToolCatalog,
    ToolSchemaError,
    error_message,
    fly_message,
    outcome,
    structured,
    timed_out,
    tool_spec,
)
from asya_gateway.service import TaskView

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
fly_dicts = st.dictionaries(st.text(max_size=6), json_values, max_size=4) | st.builds(
    lambda t, extra: {"partial": True, "text": t, **extra},
    st.text(),
    st.dictionaries(st.sampled_from(["i", "kind"]), json_scalars, max_size=2),
)


def flow(name: str = "f", **kw: Any) -> Flow:
    return parse_flow({"name": name, "route": ["a"], **kw}, 0)


# -- tools -------------------------------------------------------------------------------


def test_tool_spec_uses_name_description_and_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    t = tool_spec(flow("ask", description="Ask it", input_schema=schema))
    assert (t.name, t.description, t.input_schema) == ("ask", "Ask it", schema)


def test_tool_spec_default_description_names_the_route() -> None:
    t = tool_spec(parse_flow({"name": "p", "route": ["a", "b"]}, 0))
    assert t.input_schema == {"type": "object"}
    assert "'p'" in t.description and "a → b" in t.description


def test_catalog_lists_only_mcp_flows_in_order() -> None:
    cat = ToolCatalog.build(Flows([flow("b"), flow("x", mcp=False), flow("a")]))
    assert [t.name for t in cat.tools()] == ["b", "a"]
    assert cat.lookup("x") is None and cat.lookup("nope") is None
    assert cat.lookup("a") is not None


def test_an_invalid_schema_stops_the_build_naming_the_flow() -> None:
    bad = flow("broken", input_schema={"type": "object", "properties": {"q": {"type": 5}}})
    with pytest.raises(ToolSchemaError, match="flow 'broken': `input_schema`"):
        ToolCatalog.build(Flows([bad]))


# -- arguments ---------------------------------------------------------------------------

STRICT = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "opts": {
            "type": "object",
            "properties": {"temp": {"type": "number", "maximum": 2}},
            "required": ["temp"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "`prompt`: required argument is missing"),
        ({"prompt": ""}, "`prompt`: '' should be non-empty"),
        ({"prompt": 1}, "`prompt`: 1 is not of type 'string'"),
        ({"prompt": "x", "zzz": 1}, "`zzz`: unexpected argument"),
        ({"prompt": "x", "opts": {}}, "`opts.temp`: required argument is missing"),
        ({"prompt": "x", "opts": {"temp": 3}}, "`opts.temp`: 3 is greater than the maximum of 2"),
        ({"prompt": "x", "tags": ["a", 2]}, "`tags[1]`: 2 is not of type 'string'"),
    ],
)
def test_violations_name_the_field(arguments: dict[str, Any], message: str) -> None:
    cat = ToolCatalog.build(Flows([flow(input_schema=STRICT)]))
    with pytest.raises(ArgumentsRefused) as err:
        cat.check("f", arguments)
    assert str(err.value) == message


def test_valid_arguments_become_the_payload() -> None:
    cat = ToolCatalog.build(Flows([flow(input_schema=STRICT), flow("open")]))
    args = {"prompt": "hi", "opts": {"temp": 1.5}, "tags": ["x"]}
    assert cat.check("f", args) == args
    assert cat.check("open", None) == {}


TYPES = {"string": st.text(), "integer": st.integers(), "boolean": st.booleans()}


@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh", min_size=1, max_size=4),
        st.sampled_from(sorted(TYPES)),
        min_size=1,
        max_size=5,
    ).flatmap(
        lambda props: st.tuples(
            st.just(props),
            st.fixed_dictionaries(
                {k: st.one_of(*TYPES.values()) for k in props},
            ),
        )
    )
)
def test_check_refuses_exactly_the_mistyped_arguments_naming_one(
    case: tuple[dict[str, str], dict[str, Any]],
) -> None:
    props, args = case
    schema = {"type": "object", "properties": {k: {"type": t} for k, t in props.items()}}
    cat = ToolCatalog.build(Flows([flow(input_schema=schema)]))

    def fits(value: Any, t: str) -> bool:
        if t == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, {"string": str, "boolean": bool}[t])

    wrong = [k for k, v in args.items() if not fits(v, props[k])]
    if not wrong:
        assert cat.check("f", args) == args
        return
    with pytest.raises(ArgumentsRefused) as err:
        cat.check("f", args)
    assert any(str(err.value).startswith(f"`{k}`:") for k in wrong), (err.value, wrong)


# -- FLY → progress ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fly", "message"),
    [
        ({"partial": True, "text": "tok"}, "tok"),
        ({"text": ""}, ""),
        ({"text": 5}, '{"text":5}'),
        ({"type": "status", "message": "über"}, '{"type":"status","message":"über"}'),
        (
            {"artifact_update": {"parts": [{"text": "a"}]}},
            '{"artifact_update":{"parts":[{"text":"a"}]}}',
        ),
    ],
)
def test_fly_message_table(fly: dict[str, Any], message: str) -> None:
    assert fly_message(fly) == message


@given(st.lists(fly_dicts, max_size=20))
def test_progress_counts_flys_and_messages_round_trip(flys: list[dict[str, Any]]) -> None:
    state = CallState("t1")
    steps = [state.on_fly(f) for f in flys]
    assert [s.progress for s in steps] == list(range(1, len(flys) + 1))  # 1, 2, … strictly
    for f, s in zip(flys, steps, strict=True):
        if isinstance(f.get("text"), str):
            assert s.message == f["text"]
        else:
            assert "\n" not in s.message  # compact: one line
            assert msgspec.json.decode(s.message) == f
    assert state.texts == [f["text"] for f in flys if isinstance(f.get("text"), str)]


# -- task → result -----------------------------------------------------------------------


def view(status: str, **kw: Any) -> TaskView:
    return TaskView(id="t1", status=status, **kw)


@given(st.lists(fly_dicts, max_size=10), json_values)
def test_success_result_mapping(flys: list[dict[str, Any]], result: Any) -> None:
    state = CallState("t1")
    for f in flys:
        state.on_fly(f)
    out = outcome(flow(), view("succeeded", result=result), state)
    assert not out.is_error
    assert out.structured == (result if isinstance(result, dict) else {"result": result})
    texts = [f["text"] for f in flys if isinstance(f.get("text"), str)]
    if texts:
        assert out.text == "".join(texts)
    else:
        assert msgspec.json.decode(out.text) == result


def test_success_without_result_is_null() -> None:
    out = outcome(flow(), view("succeeded"), CallState("t1"))
    assert (out.text, out.structured, out.is_error) == ("null", {"result": None}, False)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ({"type": "ValueError", "message": "boom"}, "boom"),
        ("plain string from an upstream sidecar", "plain string from an upstream sidecar"),
        ({"type": "X"}, '{"type":"X"}'),
        (None, "the flow failed"),
    ],
)
def test_failure_is_an_error_with_the_message(error: Any, text: str) -> None:
    kw = {} if error is None else {"error": error}
    out = outcome(flow(), view("failed", **kw), CallState("t1"))
    assert out.is_error and out.text == text
    assert error_message(error) == text


def test_a_deadline_failure_names_the_flow_timeout() -> None:
    f = flow("slowpoke", timeout=2.5)
    out = outcome(
        f,
        view("failed", error={"type": "Timeout", "message": "SLA deadline expired"}),
        CallState("t1"),
    )
    assert out.is_error
    assert out.text == "flow 'slowpoke' passed its timeout of 2.5s: SLA deadline expired"
    gateway = {"type": "Timeout", "message": "task deadline 2025-01-01T00:00:02.500Z passed"}
    assert outcome(f, view("failed", error=gateway), CallState("t1")).text.startswith(
        "flow 'slowpoke' passed its timeout of 2.5s: task deadline"
    )
    typed = {"type": "Timeout", "message": "SLA deadline expired"}
    no_timeout = outcome(flow(), view("failed", error=typed), CallState("t1"))
    assert no_timeout.text == "SLA deadline expired"  # a flow without a timeout names none
    guard = timed_out(f, "t1")
    assert guard.is_error and guard.text.startswith("flow 'slowpoke' passed its timeout of 2.5s")


CREATED = "2025-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "error",
    [
        "connection timeout",
        "upstream deadline exceeded",
        "Timeout talking to the model",
        {"type": "TimeoutError", "message": "connection timeout"},
        {"type": "ValueError", "message": "read timeout"},
        {"type": "DeadlineExceeded", "message": "too late"},
        {"message": "timeout"},
    ],
)
def test_a_handler_error_mentioning_a_timeout_is_not_the_flow_timeout(error: Any) -> None:
    """Only the typed `Timeout` or a failure at the deadline is the flow's: a handler's own
    "connection timeout" before it is reported as it is."""
    f = flow("slowpoke", timeout=2.5)
    before = view("failed", error=error, created_at=CREATED, updated_at="2025-01-01T00:00:01.200Z")
    out = outcome(f, before, CallState("t1"))
    assert out.is_error and out.text == error_message(error)
    assert "passed its timeout" not in out.text
    assert outcome(f, view("failed", error=error), CallState("t1")).text == error_message(error)


@pytest.mark.parametrize(
    ("ended", "named"),
    [
        ("2025-01-01T00:00:02.400Z", False),
        ("2025-01-01T00:00:02.498Z", False),
        ("2025-01-01T00:00:02.500Z", True),
        ("2025-01-01T00:00:02.731Z", True),
        ("2025-01-01T00:01:00.000Z", True),
    ],
)
def test_a_failure_at_or_after_the_deadline_is_the_flow_timeout(ended: str, named: bool) -> None:
    """The sidecar's Timeout reaches the record as its message alone: the gateway's timestamps
    (deadline = created_at + the flow's timeout) decide, never the message."""
    f = flow("slowpoke", timeout=2.5)
    error = "Runtime timeout exceeded after 2.4s" if named else "connection timeout"
    failed = view("failed", error=error, created_at=CREATED, updated_at=ended)
    out = outcome(f, failed, CallState("t"))
    prefix = "flow 'slowpoke' passed its timeout of 2.5s: "
    assert out.is_error and out.text == (prefix + error if named else error)
    assert outcome(flow(), failed, CallState("t")).text == error  # no timeout: none named


def test_canceled_and_paused_end_the_call_as_errors() -> None:
    assert outcome(flow(), view("canceled"), CallState("t1")).text == "task t1 was canceled"
    paused = outcome(flow(), view("paused", pause={"prompt": "Approve?"}), CallState("t1"))
    assert paused.is_error and "Approve?" in paused.text and "/api/v1/mesh/t1/resume" in paused.text


def test_a_call_that_stops_following_a_running_task_says_where_to_read_it() -> None:
    out = outcome(flow(), view("running"), CallState("t1"))
    assert out.is_error and "task t1 (status running)" in out.text
    assert "GET /api/v1/mesh/t1" in out.text


@given(json_values)
def test_structured_is_always_an_object(value: Any) -> None:
    out = structured(value)
    assert isinstance(out, dict)
    assert out is value if isinstance(value, dict) else out == {"result": value}
