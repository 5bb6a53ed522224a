"""Pure tests of the task registry: monotonic status, progress, ring, subscribers."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from asya_gateway.events import FlyIn, StatusIn
from asya_gateway.tasks import TaskRegistry, TooManyTasks, UnknownTask, progress_fraction


def updates(chunks: list[bytes]) -> list[dict[str, object]]:
    out = []
    for chunk in b"".join(chunks).split(b"\n\n"):
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: ") and b"event: update" in chunk:
                out.append(msgspec.json.decode(line[6:]))
    return out


@pytest.mark.parametrize(
    ("state", "data", "expected"),
    [
        ("received", {"prev": [], "curr": "a", "next": ["b", "c"]}, 0.1 / 3),
        ("processing", {"prev": ["a"], "curr": "b", "next": ["c"]}, 1.5 / 3),
        # `completed` carries the output route: the actor is already in prev.
        ("completed", {"prev": ["a", "b"], "curr": "c", "next": [], "actor": "b"}, 2 / 3),
        ("completed", {"prev": ["a"], "curr": "", "next": [], "actor": "a"}, 1.0),
        ("succeeded", {"prev": []}, None),
        ("received", {"curr": "a"}, None),
    ],
)
def test_progress_fraction(state: str, data: dict[str, object], expected: float | None) -> None:
    got = progress_fraction(state, data)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_status_is_monotonic_and_stale_reports_are_ignored() -> None:
    reg = TaskRegistry()
    t = reg.create(["a", "b"])
    route = {"prev": [], "curr": "a", "next": ["b"], "actor": "a"}
    assert reg.apply(t.id, StatusIn("processing", route))
    assert t.status == "running" and t.progress == pytest.approx(0.25)
    assert reg.apply(t.id, StatusIn("received", route))  # same phase: progress kept (max)
    assert t.progress == pytest.approx(0.25)
    assert reg.apply(t.id, StatusIn("paused", {}))
    assert not reg.apply(t.id, StatusIn("processing", route))  # stale
    assert not reg.apply(t.id, StatusIn("pending", {}))
    assert t.status == "paused"
    assert reg.apply(t.id, StatusIn("failed", {"error": "boom", "error_details": "x"}))
    for late in ("succeeded", "canceled", "failed", "processing"):
        assert not reg.apply(t.id, StatusIn(late, {}))
    assert t.status == "failed" and t.error == "boom"
    assert reg.stale_ignored == 6


def test_unknown_ids() -> None:
    reg = TaskRegistry()
    with pytest.raises(UnknownTask):
        reg.apply("nope", StatusIn("received", {}))
    assert reg.apply("nope", FlyIn(b"{}")) is False
    assert reg.fly_dropped_unknown == 1
    with pytest.raises(UnknownTask):
        reg.subscribe("nope")
    with pytest.raises(UnknownTask):
        reg.cancel("nope")


def test_subscriber_buffer_drops_oldest_and_keeps_terminal() -> None:
    reg = TaskRegistry(subscriber_buffer=4)
    t = reg.create(["a"])
    sub = reg.subscribe(t.id)
    for i in range(10):
        reg.apply(t.id, FlyIn(b'{"i":%d}' % i))
    reg.apply(t.id, StatusIn("succeeded", {"result": 7}))
    assert sub.dropped == 8 and sub.finished and len(sub.queue) == 4
    body = sub.drain()
    assert b'{"i":9}' in body and b'"result":7' in body and b'{"i":6}' not in body
    assert not t.subscribers


def test_ring_replay_and_snapshot() -> None:
    reg = TaskRegistry(ring_size=5)
    t = reg.create(["a"])
    for i in range(8):
        reg.apply(t.id, FlyIn(b'{"i":%d}' % i))
    assert [eid for eid, _ in t.ring] == [4, 5, 6, 7, 8]
    sub = reg.subscribe(t.id, last_event_id=5)
    assert [c.split(b"\n")[0] for c in sub.queue] == [b"id: 6", b"id: 7", b"id: 8"]
    old = reg.subscribe(t.id, last_event_id=1)  # ring no longer reaches back: snapshot
    assert len(old.queue) == 1 and b"event: update" in old.queue[0]
    assert b"id: 8" in old.queue[0]
    bogus = reg.subscribe(t.id, last_event_id=99)
    assert b"event: update" in bogus.queue[0]


def test_terminal_snapshot_finishes_at_once() -> None:
    reg = TaskRegistry()
    t = reg.create(["a"])
    reg.cancel(t.id)
    reg.cancel(t.id)  # idempotent
    sub = reg.subscribe(t.id)
    assert sub.finished and updates(list(sub.queue))[0]["status"] == "canceled"
    assert not t.subscribers


def test_eviction_prefers_finished_tasks() -> None:
    reg = TaskRegistry(max_tasks=2)
    a = reg.create(["a"])
    reg.create(["a"])
    with pytest.raises(TooManyTasks):
        reg.create(["a"])
    reg.cancel(a.id)
    reg.create(["a"])
    assert reg.get(a.id) is None and len(reg) == 2


@pytest.mark.anyio
async def test_terminal_linger_lets_late_flys_through_before_the_terminal_update() -> None:
    reg = TaskRegistry(terminal_linger=0.2)
    t = reg.create(["a"])
    sub = reg.subscribe(t.id)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reg.run_finalizer)
        assert reg.apply(t.id, StatusIn("succeeded", {"result": 1}))
        assert t.status == "succeeded" and t.terminal  # stored at once: GET sees it
        assert not reg.apply(t.id, StatusIn("failed", {}))  # still exactly one terminal
        assert reg.apply(t.id, FlyIn(b'{"late":1}'))  # in flight from the actor's sidecar
        late_joiner = reg.subscribe(t.id)  # snapshot is terminal: finished at once
        assert late_joiner.finished
        resumer = reg.subscribe(t.id, last_event_id=0)  # resuming: waits for the terminal
        assert not resumer.finished
        body = b""
        with anyio.fail_after(5):
            while not sub.finished:
                await sub.wait()
                body += sub.drain()
        tg.cancel_scope.cancel()
    body += sub.drain()
    assert body.index(b'{"late":1}') < body.index(b'"status":"succeeded"')
    assert body.count(b'"status":"succeeded"') == 1
    assert resumer.finished and b'"status":"succeeded"' in resumer.drain()
    assert not reg.apply(t.id, FlyIn(b'{"later":1}'))  # after the linger: dropped


def test_ring_is_bounded_in_bytes_too() -> None:
    reg = TaskRegistry(ring_size=1000, ring_max_bytes=1000)
    t = reg.create(["a"])
    for i in range(50):
        reg.apply(t.id, FlyIn(b'{"pad":"%s","i":%d}' % (b"x" * 80, i)))
    assert t.ring_bytes == sum(len(c) for _, c in t.ring) <= 1000
    assert t.ring[-1][0] == 50 and len(t.ring) < 50
    sub = reg.subscribe(t.id, last_event_id=5)  # fell out of the ring: a snapshot instead
    assert len(sub.queue) == 1 and b"event: update" in sub.queue[0]
