"""Pure tests of task state (monotonic status, progress) and the live registry (ring,
subscribers, snapshot, eviction)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from asya_gateway.state import TaskRecord, apply_status, cancel, progress_fraction, timed_out
from asya_gateway.subscribers import Item
from asya_gateway.tasks import TaskRegistry
from asya_mesh.events import FlyEvent, StatusData, StatusEvent


def rec(tid: str = "t", **kw: Any) -> TaskRecord:
    return TaskRecord(**({"id": tid, "route": ["a"], "created_at": 0.0, "updated_at": 0.0} | kw))


def st(state: str, **data: Any) -> StatusEvent:
    return StatusEvent(status=state, data=msgspec.convert(data, StatusData))


def fly(i: int, seq: int | None = None) -> FlyEvent:
    return FlyEvent(data=msgspec.Raw(b'{"i":%d}' % i), seq=seq)


def updates(items: list[Item]) -> list[str]:
    return [i.task.status for i in items if i.task is not None]


@pytest.mark.parametrize(
    ("state", "prev", "curr", "nxt", "actor", "expected"),
    [
        ("received", [], "a", ["b", "c"], "", 0.1 / 3),
        ("processing", ["a"], "b", ["c"], "", 1.5 / 3),
        # `completed` carries the output route: the actor is already in prev.
        ("completed", ["a", "b"], "c", [], "b", 2 / 3),
        ("completed", ["a"], "", [], "a", 1.0),
        ("succeeded", [], "", [], "", -1.0),
    ],
)
def test_progress_fraction(
    state: str, prev: list[str], curr: str, nxt: list[str], actor: str, expected: float
) -> None:
    assert progress_fraction(state, prev, curr, nxt, actor) == pytest.approx(expected)


def test_status_is_monotonic_and_stale_reports_are_ignored() -> None:
    r = rec(route=["a", "b"])
    route = {"prev": [], "curr": "a", "next": ["b"], "actor": "a"}
    r1 = apply_status(r, event=st("processing", **route), now=1)
    assert r1 is not None and r1.status == "running" and r1.progress == pytest.approx(0.25)
    r2 = apply_status(r1, event=st("received", **route), now=2)  # same phase: progress kept
    assert r2 is not None and r2.progress == pytest.approx(0.25)
    r3 = apply_status(r2, event=st("paused", pause={"prompt": "ok?"}, envelope={"id": "t"}), now=3)
    assert r3 is not None and r3.pause == {"prompt": "ok?"} and r3.envelope == {"id": "t"}
    assert apply_status(r3, event=st("processing", **route), now=4) is None  # stale
    assert apply_status(r3, event=st("pending"), now=4) is None
    r4 = apply_status(r3, event=st("failed", error="boom", error_details="x"), now=5)
    assert r4 is not None and r4.error == "boom" and r4.message == "x"
    for late in ("succeeded", "canceled", "failed", "processing"):
        assert apply_status(r4, event=st(late), now=6) is None
    assert cancel(r4, 7) is None


def test_deadline_fails_with_timeout_only_when_due() -> None:
    r = rec(deadline_at=10.0)
    assert timed_out(r, 9.9) is None
    failed = timed_out(r, 10.0)
    assert failed is not None and failed.status == "failed"
    assert failed.error["type"] == "Timeout" and "deadline" in failed.error["message"]
    assert timed_out(failed, 11) is None


def test_unknown_ids_drop_flys() -> None:
    reg = TaskRegistry()
    assert reg.fly("nope", fly(0)) is False
    assert reg.fly_dropped_unknown == 1


def test_subscriber_buffer_drops_oldest_and_keeps_terminal() -> None:
    reg = TaskRegistry(subscriber_buffer=4)
    r = rec()
    reg.track(r, new=True)
    sub = reg.subscribe(r)
    for i in range(10):
        reg.fly(r.id, fly(i))
    reg.changed(msgspec.structs.replace(r, status="succeeded", result=7))
    assert sub.dropped == 8 and sub.finished and len(sub.queue) == 4
    body = sub.drain_sse()
    assert b'{"i":9}' in body and b'"result":7' in body and b'{"i":6}' not in body
    live = reg.get(r.id)
    assert live is not None and not live.subscribers


def test_ring_replay_and_snapshot() -> None:
    reg = TaskRegistry(ring_size=5)
    r = rec()
    live = reg.track(r, new=True)
    for i in range(8):
        reg.fly(r.id, fly(i))
    assert [item.event_id for item in live.ring] == [4, 5, 6, 7, 8]
    sub = reg.subscribe(r, last_event_id=5)
    assert [item.event_id for item in sub.queue] == [6, 7, 8]
    old = reg.subscribe(r, last_event_id=1)  # ring no longer reaches back: snapshot
    assert len(old.queue) == 1 and old.queue[0].task is not None
    assert old.queue[0].event_id == 8
    bogus = reg.subscribe(r, last_event_id=99)
    assert bogus.queue[0].task is not None


def test_rebuilt_task_ids_are_above_any_id_from_before() -> None:
    reg = TaskRegistry(clock=lambda: 1000.0)
    r = rec()
    live = reg.track(r)  # e.g. after a restart: its events are numbered past the old ones
    assert live.last_event_id == 1_000_000_000
    sub = reg.subscribe(r, last_event_id=12)  # an id from before the restart: snapshot
    assert updates(sub.drain()) == ["pending"]


def test_terminal_snapshot_finishes_at_once() -> None:
    reg = TaskRegistry()
    r = rec(status="canceled")
    sub = reg.subscribe(r)
    assert sub.finished and updates(list(sub.queue)) == ["canceled"]


def test_eviction_prefers_ended_tasks() -> None:
    reg = TaskRegistry(max_tasks=2)
    a, b, c = rec("a"), rec("b"), rec("c")
    reg.track(a, new=True)
    reg.track(b, new=True)
    reg.changed(msgspec.structs.replace(a, status="canceled"))
    reg.track(c, new=True)
    assert reg.get("a") is None and reg.get("b") is not None and len(reg) == 2


@given(hs.lists(hs.tuples(hs.booleans(), hs.integers(0, 30)), max_size=120), hs.integers(1, 6))
def test_eviction_forgets_the_first_ended_task_else_the_oldest(
    ops: list[tuple[bool, int]], cap: int
) -> None:
    # A model: creates (False) and ends (True, of the i-th created task still known).
    reg = TaskRegistry(max_tasks=cap)
    known: list[str] = []  # insertion order of what the registry holds
    ended: list[str] = []  # the order they ended in
    n = 0
    for end, i in ops:
        if end:
            running = [t for t in known if t not in ended]
            if running:
                tid = running[i % len(running)]
                reg.changed(rec(tid, status="succeeded", updated_at=1.0))
                ended.append(tid)
            continue
        tid, n = f"t{n}", n + 1
        if len(known) >= cap:  # the model's choice: the first ended, else the oldest held
            gone = ended.pop(0) if ended else known[0]
            known.remove(gone)
        reg.track(rec(tid), new=True)
        known.append(tid)
        assert len(reg) == len(known) <= cap
        assert all(reg.get(t) is not None for t in known)


def test_ring_is_bounded_in_bytes_too() -> None:
    reg = TaskRegistry(ring_size=1000, ring_max_bytes=1000)
    r = rec()
    live = reg.track(r, new=True)
    for i in range(50):
        reg.fly(r.id, FlyEvent(data=msgspec.Raw(b'{"pad":"%s","i":%d}' % (b"x" * 80, i))))
    assert live.ring_bytes == sum(c.size for c in live.ring) <= 1000
    assert all(c.size >= len(c.sse) for c in live.ring)
    assert live.ring[-1].event_id == 50 and len(live.ring) < 50
    sub = reg.subscribe(r, last_event_id=5)  # fell out of the ring: a snapshot instead
    assert len(sub.queue) == 1 and sub.queue[0].task is not None


@given(hs.permutations(list(range(12))), hs.integers(0, 12), hs.booleans())
def test_any_interleaving_gives_ordered_flys_then_exactly_one_terminal_last(
    order: list[int], at: int, late_subscriber: bool
) -> None:
    reg = TaskRegistry(clock=lambda: 0.0)
    r = rec()
    reg.track(r, new=True)
    sub = reg.subscribe(r)
    done = msgspec.structs.replace(r, status="succeeded", result=1, flies=12, updated_at=1.0)
    for k, seq in enumerate(order):
        if k == at:
            reg.changed(done)
        reg.fly(r.id, fly(seq, seq))
    if at >= len(order):
        reg.changed(done)
    reg.fly(r.id, fly(99, 12))  # after the terminal: dropped
    resumed = reg.subscribe(done, last_event_id=0) if late_subscriber else None
    for s in (sub, resumed):
        if s is None:
            continue
        items = s.drain()
        flys = [msgspec.json.decode(i.fly)["i"] for i in items if i.fly is not None]
        assert flys == list(range(12))
        assert [i.task is not None and i.task.terminal for i in items].count(True) == 1
        assert items[-1].task is not None and items[-1].task.status == "succeeded"
        ids = [i.event_id for i in items]
        assert ids == sorted(set(ids))
        assert s.finished


@given(
    hs.lists(hs.tuples(hs.integers(0, 40), hs.sampled_from([0.0, 0.1, 0.6])), max_size=30),
    hs.booleans(),
)
def test_the_timer_heap_never_sleeps_past_a_gate_deadline(
    arrivals: list[tuple[int, float]], terminal_first: bool
) -> None:
    """FLYs with gaps (held up to 1 s) and a terminal waiting for FLYs that never come: driven
    the way the engine's timer drives it (sleep until `due_at()`, then `expire()`), everything
    comes out, the terminal last, and no deadline is ever missed."""
    now = [0.0]
    # different bounds, so a deadline can also move earlier (a terminal held after a gap)
    reg = TaskRegistry(clock=lambda: now[0], fly_hold_seconds=1.0, terminal_wait_seconds=0.3)
    r = rec()
    live = reg.track(r, new=True)
    sub = reg.subscribe(r)
    done = msgspec.structs.replace(r, status="succeeded", flies=1000, updated_at=1.0)

    def tick(to: float) -> None:  # the timer task, between now and `to`
        for _ in range(200):  # each round releases something or moves on: never a spin
            due = reg.due_at()
            if due is None or due > to:
                break
            gate_due = live.gate.due
            assert gate_due is None or due <= gate_due  # never later than a real deadline
            now[0] = max(now[0], due)
            reg.expire()
        else:
            raise AssertionError("the timer spins: due_at() stays due after expire()")
        now[0] = to

    if terminal_first:
        reg.changed(done)
    for seq, gap in arrivals:
        tick(now[0] + gap)
        reg.fly(r.id, fly(seq, seq))
    if not terminal_first:
        reg.changed(done)
    tick(now[0] + 3.0)  # past every bound
    assert live.gate.due is None and reg.due_at() is None
    items = sub.drain()
    assert items[-1].task is not None and items[-1].task.status == "succeeded"
    flys = [msgspec.json.decode(i.fly)["i"] for i in items if i.fly is not None]
    assert flys == sorted(flys) and len(flys) == len(set(flys))  # in order, each at most once


_NAMES = hs.text(hs.sampled_from('a"\\\x00\x1fé\u2028😀'), max_size=300)


@given(
    _NAMES.filter(bool),
    _NAMES,
    hs.sampled_from(["received", "processing", "completed"]),
    hs.floats(0, 1),
    hs.floats(0, 4e9),
    hs.integers(0, 2**62),
)
def test_a_progress_update_is_counted_at_no_less_than_its_encoded_size(
    tid: str, actor: str, state: str, progress: float, at: float, eid: int
) -> None:
    """The ring counts a progress update before encoding it (most are never read): its
    bound must hold, or the ring's byte limit would not."""
    r = msgspec.structs.replace(
        rec(tid), status="running", state=state, actor=actor, progress=progress, updated_at=at
    )
    item = Item(eid, record=r)
    assert item.size >= len(item.sse)
    assert item.sse.startswith(b"id: %d\nevent: update\ndata: {" % eid)


@given(
    hs.binary(max_size=300),
    hs.sampled_from(["partial", "status-update", "artifact-update", "message"]),
    hs.integers(0, 2**62),
)
def test_a_fly_is_counted_at_exactly_its_encoded_size(data: bytes, name: str, eid: int) -> None:
    """A one-line FLY is counted before it is encoded (most are never read as SSE), any
    other measured: either way the ring counts its exact encoded size."""
    item = Item(eid, name=name, fly=data)
    assert item.size == len(item.sse)
    assert item.sse.startswith(b"id: %d\nevent: %b\ndata: " % (eid, name.encode()))
