"""`parse_task_events`: many tasks' events in one body, as the sidecar's outbox encodes them."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.ingest import BadEvent, parse_task_events
from asya_mesh.events import FlyEvent, StatusEvent
from asya_sidecar.forwarder import EnvelopeEvents, Pending
from asya_sidecar.link import tagged
from asya_sidecar.metrics import Metrics
from asya_sidecar.reports import fly, status_event

_metrics = Metrics("memory")


def _encode(items: list[tuple[str, FlyEvent | StatusEvent]]) -> bytes:
    return (
        b"["
        + b",".join(tagged(Pending(EnvelopeEvents(None, _metrics, i), e)) for i, e in items)
        + b"]"
    )


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 1000)), min_size=1))
def test_each_tasks_events_keep_their_order(items: list[tuple[str, int]]) -> None:
    body = _encode([(tid, fly({"k": k}, seq=j)) for j, (tid, k) in enumerate(items)])
    runs = parse_task_events(body)
    flat = [
        (tid, msgspec.json.decode(e.data)["k"])
        for tid, evs in runs
        for e in evs
        if isinstance(e, FlyEvent)
    ]
    assert flat == items
    assert all(runs[i][0] != runs[i + 1][0] for i in range(len(runs) - 1))  # maximal runs


def test_statuses_and_fly_counts_survive() -> None:
    body = _encode(
        [
            ("a", status_event("received", curr="x")),
            ("b", FlyEvent(data=msgspec.Raw(b"{}"), seq=4, n=3)),
        ]
    )
    (ta, [sa]), (tb, [fb]) = parse_task_events(body)
    assert (ta, tb) == ("a", "b")
    assert isinstance(sa, StatusEvent) and sa.status == "received" and sa.data.curr == "x"
    assert isinstance(fb, FlyEvent) and (fb.seq, fb.n) == (4, 3)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": "a", "type": "fly", "data": {}}', "Expected `array`"),
        (b'[{"type": "fly", "data": {}}]', "missing required field `id`"),
        (b'[{"id": "", "type": "fly", "data": {}}]', "without a task `id` - at `$[0].id`"),
        (b'[{"id": "a", "type": "fly", "data": {}}, {"id": "b", "type": "nope"}]', "`$[1].type`"),
        (b'[{"id": "a", "type": "status", "status": "bogus"}]', "unknown status 'bogus'"),
        (b"", "empty body"),
    ],
)
def test_bad_batches_name_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=None) as exc:
        parse_task_events(body)
    assert reason in str(exc.value)
