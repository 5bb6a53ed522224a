"""End-actor reports (upstream's data shapes, plus the task's FLY count), pure."""

from __future__ import annotations

from typing import Any

import msgspec

from asya_runtime.wire import Envelope, Route
from asya_sidecar.reports import terminal


def env(**kw: object) -> Envelope:
    base: dict[str, object] = {
        "id": "t",
        "route": Route(prev=["a", "b"], curr="", next=[]),
        "status": {"phase": "succeeded"},
        "payload": {"r": 1},
    }
    return Envelope(**(base | kw))  # type: ignore[arg-type]


def final_report(e: Envelope, *, is_sump: bool, now: float) -> tuple[str, dict[str, Any]] | None:
    """(state, data as the gateway receives it) or None."""
    ev = terminal(e, is_sump=is_sump, now=now)
    if ev is None:
        return None
    return ev.status, msgspec.json.decode(msgspec.json.encode(ev.data))


def test_success_report() -> None:
    state, data = final_report(env(), is_sump=False, now=0)  # type: ignore[misc]
    assert state == "succeeded"
    assert data == {
        "id": "t",
        "status": "succeeded",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "progress": 1.0,
        "result": {"r": 1},
        "flies": 0,
    }


def test_the_terminal_report_carries_the_tasks_fly_count() -> None:
    for value, flies in (("12", 12), (7, 7), ("bad", 0)):
        e = env(headers={"x-asya-fly-count": value})
        _, data = final_report(e, is_sump=False, now=0)  # type: ignore[misc]
        assert data["flies"] == flies
    _, data = final_report(env(headers={"x-asya-fly-count": 3}), is_sump=True, now=0)  # type: ignore[misc]
    assert data["flies"] == 3


def test_a_null_result_is_reported_as_null() -> None:
    _, data = final_report(env(payload=None), is_sump=False, now=0)  # type: ignore[misc]
    assert "result" in data and data["result"] is None


def test_failure_report_from_status_error_and_from_payload() -> None:
    e = env(
        route=Route(prev=["a"], curr="b", next=["c"]),
        status={"phase": "failed", "error": {"message": "boom", "type": "ValueError"}},
    )
    state, data = final_report(e, is_sump=False, now=0)  # type: ignore[misc]
    assert state == "failed" and data["error"] == "boom"
    assert data["error_details"]["type"] == "ValueError"
    assert (data["prev"], data["curr"], data["next"]) == (["a"], "b", ["c"])
    assert (data["current_actor_idx"], data["current_actor_name"]) == (1, "b")
    sump = env(status={}, payload={"error": "parse", "details": {"x": 1}})
    state, data = final_report(sump, is_sump=True, now=0)  # type: ignore[misc]
    assert state == "failed" and data["error"] == "parse" and data["error_details"] == {"x": 1}


def test_no_report_for_fanout_children_fan_in_and_non_terminal() -> None:
    assert final_report(env(parent_id="p"), is_sump=False, now=0) is None
    assert final_report(env(headers={"x-asya-fan-in": "1"}), is_sump=False, now=0) is None
    assert final_report(env(status={"phase": "canceled"}), is_sump=False, now=0) is None
