"""`asya_runtime.testing`: what a handler author gets to test with nothing running."""

from __future__ import annotations

from typing import Any

import pytest

from asya_runtime.testing import (
    actor,
    collect_all,
    emits,
    errors,
    flies,
    run_handler,
    run_handler_sync,
)
from asya_runtime.wire import End
from examples.handlers import (
    counter,
    failing,
    fanout,
    progress,
    router,
    stages,
    sync_upper,
    tokens,
)


def test_collect_all_sync_and_async() -> None:
    def g(p: Any) -> Any:
        yield "FLY", {"a": 1}
        yield p

    assert collect_all(g({"x": 1})) == [("FLY", {"a": 1}), {"x": 1}]


@pytest.mark.anyio
async def test_collect_all_async() -> None:
    async def g(p: Any) -> Any:
        yield "FLY", {"a": 1}
        yield p

    assert await collect_all(g(1)) == [("FLY", {"a": 1}), 1]


def test_actor_as_wrapper_filters_fly_and_drives_verbs() -> None:
    def handler(p: Any) -> Any:
        yield "FLY", {"partial": True}
        nxt = yield "GET", ".route.next"
        yield "SET", ".route.next", ["x", *nxt]
        yield "SET", ".headers.trace", "t1"
        yield {"seen": nxt}

    wrapped = actor(handler, route=["me", "b"])
    assert wrapped({}) == [{"seen": ["b"]}]
    assert wrapped.flies == [{"partial": True}]
    assert wrapped.context["route"]["next"] == ["x", "b"]
    assert wrapped.context["headers"] == {"trace": "t1"}


def test_actor_as_decorator_on_a_function() -> None:
    @actor
    def double(p: Any) -> Any:
        return {"v": p["v"] * 2}

    assert double({"v": 2}) == [{"v": 4}]

    @actor(route=["a"])
    def nothing(p: Any) -> None:
        return None

    assert nothing({}) == []


@pytest.mark.anyio
async def test_actor_on_async_handlers() -> None:
    wrapped = actor(router.route)
    assert await wrapped({"next": "qa"}) == [{"next": "qa", "routed_to": ["qa"]}]
    assert wrapped.context["route"]["next"] == ["qa"]
    c = actor(counter.Counter().handle)
    assert await c({}) == [{"count": 1}]


def test_actor_refuses_abi_misuse() -> None:
    def bad(p: Any) -> Any:
        yield "SET", ".id", "x"

    with pytest.raises(Exception, match="denied"):
        actor(bad)({})


@pytest.mark.anyio
async def test_run_handler_frames_for_tokens() -> None:
    frames = await run_handler(tokens.stream, {"prompt": "hi", "token_delay": 0}, route=["t", "n"])
    assert isinstance(frames[-1], End)
    text = "".join(d["text"] for d in flies(frames))
    assert all(d["partial"] is True for d in flies(frames))
    (emit,) = emits(frames)
    assert emit.payload["text"] == text and emit.payload["prompt"] == "hi"
    assert emit.route.curr == "n" and emit.route.prev == ["t"]


def test_run_handler_sync_routes_headers_and_errors() -> None:
    frames = run_handler_sync(router.route, {"prepend": "check"}, route=["r", "end"])
    (emit,) = emits(frames)
    assert (emit.route.curr, emit.route.next) == ("check", ["end"])
    assert emit.headers == {"routed-by": "router"}
    frames = run_handler_sync(failing.explode, {"fly_first": True, "message": "nope"})
    assert [type(f).__name__ for f in frames] == ["Fly", "Error", "End"]
    (err,) = errors(frames)
    assert (err.type, err.message, err.code) == ("ValueError", "nope", "processing_error")


def test_run_handler_by_spec_and_sync_kinds() -> None:
    frames = run_handler_sync("examples.handlers.sync_upper:upper", {"text": "a"})
    assert emits(frames)[0].payload == {"text": "A"}
    assert emits(run_handler_sync(sync_upper.upper, {"text": "b"}))[0].payload == {"text": "B"}
    split = emits(run_handler_sync(fanout.split, {"items": ["x", "y"]}))
    assert [e.payload["item"] for e in split] == ["x", "y"]


@pytest.mark.anyio
async def test_demo_handlers_chain_as_a_route() -> None:
    """stages -> tokens -> progress: each passes the payload through and adds its keys."""
    route = ["stages", "tokens", "progress"]
    payload: Any = {"prompt": "chain", "stage_delay": 0, "token_delay": 0, "item_delay": 0}
    for i, (handler, _name) in enumerate(
        [(stages.pipeline, "stages"), (tokens.stream, "tokens"), (progress.batch, "progress")]
    ):
        frames = await run_handler(handler, payload, route=route[i:])
        (emit,) = emits(frames)
        assert emit.route.curr == (route[i + 1] if i + 1 < len(route) else "")
        payload = emit.payload
    assert payload["stages"] == ["download", "validate", "transform", "save"]
    assert payload["text"].startswith("You asked: chain")
    assert len(payload["results"]) == 5
    progress_flies = flies(await run_handler(progress.batch, {"items": [1, 2], "item_delay": 0}))
    assert progress_flies[0] == {
        "type": "progress",
        "percent": 0,
        "current": 1,
        "total": 2,
        "message": "Processing item 1/2",
    }
