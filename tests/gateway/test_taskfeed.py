"""The sidecars' task feed: which stored changes it says (pure), and to whom (`TaskFeed`)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from asya_gateway.state import TaskRecord
from asya_gateway.taskfeed import TaskFeed, feed_status


def rec(**kw: Any) -> TaskRecord:
    return TaskRecord(**({"id": "t", "route": ["a"], "created_at": 0.0, "updated_at": 0.0} | kw))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"status": "canceled"}, "canceled"),
        ({"status": "paused", "state": "paused"}, "paused"),
        ({"status": "failed", "error": {"type": "Timeout", "message": "late"}}, "failed"),
        ({"status": "failed", "error": {"type": "ValueError", "message": "no"}}, None),
        ({"status": "running", "state": "resumed"}, "running"),
        ({"status": "running", "state": "processing"}, None),
        ({"status": "succeeded"}, None),
        ({"status": "pending"}, None),
    ],
)
def test_only_stops_and_resumes_are_fed(change: dict[str, Any], said: str | None) -> None:
    assert feed_status(rec(**change)) == said


def test_every_subscriber_gets_each_line_once_and_a_closed_feed_finishes_them() -> None:
    feed = TaskFeed(buffer=8)
    a, b = feed.subscribe(), feed.subscribe()
    feed.changed(rec(status="running", state="processing"))  # not a feed line
    feed.changed(rec(id="x", status="canceled"))
    for sub in (a, b):
        (item,) = sub.drain()
        assert item.sse.startswith(b"event: task\ndata: ")
        assert msgspec.json.decode(item.sse.split(b"data: ")[1]) == {
            "id": "x",
            "status": "canceled",
        }
    feed.unsubscribe(b)
    feed.changed(rec(id="y", status="paused"))
    assert len(list(a.drain())) == 1 and not list(b.drain())
    feed.close()
    assert a.finished
