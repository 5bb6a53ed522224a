"""The envelopes the gateway enqueues (pure): a new task's first one, a resumed task's."""

from __future__ import annotations

import json

from asya_gateway.envelopes import first_envelope, resumed_envelope
from asya_gateway.state import TaskRecord


def test_a_new_task_starts_at_its_first_actor_and_reports_to_the_mesh_url() -> None:
    rec = TaskRecord(
        id="t1", route=["a", "b"], created_at=0.0, updated_at=0.0, deadline_at=2.5, payload=[1]
    )
    env = json.loads(first_envelope(rec, {"x-trace": "z"}, "http://gw:8081"))
    assert env["id"] == "t1"
    assert env["route"] == {"prev": [], "curr": "a", "next": ["b"]}
    assert env["headers"] == {"x-trace": "z", "x-asya-gateway-url": "http://gw:8081"}
    assert env["status"]["phase"] == "pending"
    assert env["status"]["deadline_at"] == "1970-01-01T00:00:02.500Z"
    assert env["payload"] == [1]


def test_a_resumed_envelope_carries_the_answer_and_drops_the_pause_header() -> None:
    paused = {
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": []},
        "headers": {"x-asya-pause": {"prompt": "?"}, "x-keep": 1},
        "payload": {"q": 1},
    }
    actor, body = resumed_envelope(paused, {"answer": "yes"}, None)
    env = json.loads(body)
    assert actor == "b"
    assert env["headers"] == {"x-keep": 1}
    assert env["payload"]["answer"] == "yes" and env["payload"]["q"] == 1
    assert paused["headers"] == {"x-asya-pause": {"prompt": "?"}, "x-keep": 1}  # not mutated


def test_a_pause_by_the_last_actor_resumes_into_x_sink_as_succeeded() -> None:
    paused = {"id": "t1", "route": {"prev": ["a"], "curr": "", "next": []}, "status": {}}
    actor, body = resumed_envelope(paused, {"answer": "yes"}, None)
    assert actor == "x-sink"
    assert json.loads(body)["status"] == {"phase": "succeeded", "reason": "Completed"}
