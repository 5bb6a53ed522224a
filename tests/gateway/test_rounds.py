"""`plan_rounds`: many tasks' events applied in rounds, each task's order kept."""

from __future__ import annotations

import itertools

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.rounds import plan_rounds
from asya_mesh.events import Event, FlyEvent, StatusData, StatusEvent


def _fly(k: int) -> FlyEvent:
    return FlyEvent(data=msgspec.Raw(b'{"k":%d}' % k), seq=k)


def _status(k: int) -> StatusEvent:
    return StatusEvent(status="processing", data=StatusData(actor=str(k)))


_event = st.builds(lambda fly, k: _fly(k) if fly else _status(k), st.booleans(), st.integers(0, 99))
_batch = st.dictionaries(st.sampled_from("abcd"), st.lists(_event, min_size=1, max_size=12))


@given(_batch)
def test_each_tasks_events_come_out_in_order_one_run_per_round(
    batch: dict[str, list[Event]],
) -> None:
    rounds = plan_rounds(batch)
    seen: dict[str, list[Event]] = {tid: [] for tid in batch}
    kinds: dict[str, list[type]] = {tid: [] for tid in batch}
    for rnd in rounds:
        runs = [(t, list(e)) for t, e in rnd.statuses] + [(t, list(e)) for t, e in rnd.flys]
        tasks = [t for t, _ in runs]
        assert len(tasks) == len(set(tasks))  # at most one run of a task per round
        for tid, events in runs:
            assert events  # no empty runs
            assert len({type(e) for e in events}) == 1
            seen[tid] += events
            kinds[tid].append(type(events[0]))
    assert seen == batch  # nothing lost, nothing reordered within a task
    for ks in kinds.values():  # runs are maximal: a task's consecutive runs alternate
        assert all(a is not b for a, b in itertools.pairwise(ks))


def test_a_typical_request_is_one_round() -> None:
    batch: dict[str, list[Event]] = {
        "a": [_status(1), _status(2)],  # received, processing
        "b": [_fly(1), _fly(2)],
        "c": [_status(3)],
    }
    (rnd,) = plan_rounds(batch)
    assert [t for t, _ in rnd.statuses] == ["a", "c"]
    assert [t for t, _ in rnd.flys] == ["b"]


def test_flys_then_a_terminal_take_two_rounds_in_that_order() -> None:
    first, second = plan_rounds({"a": [_fly(0), _fly(1), _status(9)]})
    assert [len(e) for _, e in first.flys] == [2] and not first.statuses
    assert [t for t, _ in second.statuses] == ["a"] and not second.flys
