"""End-actor reports (upstream's data shapes), pure."""

from __future__ import annotations

from asya_runtime.wire import Envelope, Route
from asya_sidecar.endactor import final_report


def env(**kw: object) -> Envelope:
    base: dict[str, object] = {
        "id": "t",
        "route": Route(prev=["a", "b"], curr="", next=[]),
        "status": {"phase": "succeeded"},
        "payload": {"r": 1},
    }
    return Envelope(**(base | kw))  # type: ignore[arg-type]


def test_success_report() -> None:
    state, data = final_report(env(), is_sump=False, now=0)  # type: ignore[misc]
    assert state == "succeeded"
    assert data == {
        "id": "t",
        "status": "succeeded",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "progress": 1.0,
        "result": {"r": 1},
    }


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
