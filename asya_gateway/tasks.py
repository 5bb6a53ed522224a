"""The live side of tasks: per-task replay ring, subscribers and FLY gate, in this process.

Synchronous and I/O-free. The engine hands it records that changed (already stored) and FLYs
as they arrive; it orders them (`FlyGate`), numbers them and fans them out as `Item`s to
`Subscriber`s (`subscribers.py`). Durable state lives in the store; what lives here is
bounded and may be rebuilt from the store (a restart costs the ring, not tasks).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

import anyio
import msgspec

from asya_mesh.events import FlyEvent

from .ordering import FlyGate
from .sse import fly_event_name, might_be_a2a
from .state import TaskRecord
from .subscribers import Item, Subscriber

_dict: Final = msgspec.json.Decoder(dict)


class _PendingFly(msgspec.Struct, frozen=True):
    """A FLY waiting in its task's gate; it gets its event id when published."""

    name: str
    data: bytes
    eid: int | None = None  # the bus's id, if the bus numbers events


class _PendingStatus(msgspec.Struct, frozen=True):
    """A stored change waiting in its task's gate (a terminal waiting for its FLYs)."""

    record: TaskRecord
    eid: int | None = None


_Gated = _PendingFly | _PendingStatus


class Live:
    """One task as this process streams it."""

    def __init__(self, rec: TaskRecord, gate: FlyGate[_Gated], ring: int, first_id: int) -> None:
        self.id = rec.id
        self.record = rec  # the newest stored state (what GET answers)
        self.published = rec  # the state the last published update carried
        self.ended = rec.terminal  # its terminal update has gone out: no more events
        self.last_event_id = first_id  # the id a snapshot taken now carries
        # Bounded replay ring for Last-Event-ID; overflow forgets the oldest events (a client
        # resuming from before the ring gets a fresh snapshot instead).
        self.ring: deque[Item] = deque(maxlen=ring)
        self.ring_bytes = 0
        self.ring_complete = False  # the ring holds every event of the task since it began
        self.subscribers: set[Subscriber] = set()
        self.gate = gate
        self.fly_count = 0
        self.due_scheduled: float | None = None  # its one live entry on the timer heap

    @property
    def terminal(self) -> bool:
        return self.record.terminal


class TaskRegistry:
    """The live tasks of this process, bounded: the oldest ended tasks are forgotten first."""

    def __init__(
        self,
        *,
        ring_size: int = 1000,
        ring_max_bytes: int = 1024 * 1024,
        subscriber_buffer: int = 1024,
        max_tasks: int = 2000,
        fly_hold_seconds: float = 1.0,
        fly_hold_max: int = 256,
        terminal_wait_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        bus_ids: bool = False,
    ) -> None:
        # `bus_ids`: event ids come from the bus (replicas agree on them); else counted here.
        self.bus_ids = bus_ids
        self.id_floor = 0  # with bus ids: every id issued from now on is above this
        self.ring_size = ring_size
        self.ring_max_bytes = ring_max_bytes
        self.subscriber_buffer = subscriber_buffer
        self.max_tasks = max_tasks
        self.fly_hold_seconds = fly_hold_seconds
        self.fly_hold_max = fly_hold_max
        self.terminal_wait_seconds = terminal_wait_seconds
        self.clock = clock
        self._live: OrderedDict[str, Live] = OrderedDict()
        # Ended tasks in the order they ended (ids may be stale): eviction takes the first in
        # O(1); a scan of every live task per create cost a busy gateway a fifth of its CPU.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._due: list[tuple[float, str]] = []  # gate deadlines; stale entries skipped
        self.wakeup = anyio.Event()  # set when a new, earlier deadline may exist
        self.fly_dropped_unknown = 0  # FLYs for unknown or ended tasks (accepted, dropped)
        self.subscriber_dropped = 0  # events dropped from slow clients' buffers

    def __len__(self) -> int:
        return len(self._live)

    def get(self, task_id: str) -> Live | None:
        return self._live.get(task_id)

    def track(self, rec: TaskRecord, *, new: bool = False) -> Live:
        """The live entry of a stored task, created (and the oldest ended one evicted) if
        missing; `new`: the task was just created here, so its ring will hold all its events."""
        live = self._live.get(rec.id)
        if live is not None:
            self._live.move_to_end(rec.id)
            return live
        if len(self._live) >= self.max_tasks:
            self._evict()
        gate: FlyGate[_Gated] = FlyGate(
            hold_seconds=self.fly_hold_seconds,
            max_held=self.fly_hold_max,
            terminal_seconds=self.terminal_wait_seconds,
        )
        # A task born here counts its events from 0. One rebuilt from the store (after a
        # restart, or evicted) counts from the microseconds since the epoch: ids keep growing
        # across restarts (a task never has more events than microseconds of life), so a
        # Last-Event-ID from before one is older than the new ring and gets a snapshot.
        # With bus ids the floor plays that part: the bus lifts its sequence the same way.
        rebuilt_id = self.id_floor if self.bus_ids else int(self.clock() * 1_000_000)
        first_id = 0 if new else rebuilt_id
        live = Live(rec, gate, self.ring_size, first_id)
        live.ring_complete = new
        self._live[rec.id] = live
        return live

    def _evict(self) -> None:
        while self._ended:
            tid, _ = self._ended.popitem(last=False)
            live = self._live.get(tid)
            if live is not None and live.ended and not live.subscribers:
                del self._live[tid]
                return
        # Nothing ended: forget the oldest anyway; the store still has it (its ring is lost).
        tid, live = next(iter(self._live.items()))
        for sub in live.subscribers:
            sub.finish()
        del self._live[tid]

    # -- ingest ---------------------------------------------------------------------------

    def fly(self, task_id: str, event: FlyEvent, eid: int | None = None) -> bool:
        """A FLY for a task; False (dropped, counted) if the task is unknown here or ended."""
        live = self._live.get(task_id)
        if live is None or live.ended:
            self.fly_dropped_unknown += 1
            return False
        raw = bytes(event.data)
        name = fly_event_name(_dict.decode(raw)) if might_be_a2a(raw) else "partial"
        live.fly_count += event.n
        pending = _PendingFly(name, raw, eid)
        self._emit(live, live.gate.offer(pending, event.seq, event.n, self.clock()))
        return True

    def changed(self, rec: TaskRecord, eid: int | None = None) -> None:
        """A stored change of a task: published now, or once its FLYs are through."""
        live = self.track(rec)
        if rec.updated_at < live.record.updated_at:
            return  # an older change delivered late (another replica's): already superseded
        live.record = rec
        pending = _PendingStatus(rec, eid)
        if rec.terminal or rec.status == "paused":
            self._emit(live, live.gate.hold_terminal(pending, rec.flies, self.clock()))
        else:
            self._emit(live, [pending])

    def _emit(self, live: Live, items: list[_Gated]) -> None:
        for item in items:
            if live.ended:
                return  # nothing after the terminal update
            if isinstance(item, _PendingStatus):
                rec = item.record
                live.published = rec
                live.ended = rec.terminal
                self._publish(live, item.eid, record=rec)
                if rec.terminal:
                    for sub in live.subscribers:
                        sub.finish()
                    live.subscribers.clear()
                    self._ended[live.id] = None
            else:
                self._publish(live, item.eid, name=item.name, fly=item.data)
        due = live.gate.due
        # One heap entry per task, at or before its gate's deadline (a held FLY per FLY would
        # otherwise push one per FLY); a deadline that moved later is re-filed when reached.
        if due is not None and (live.due_scheduled is None or due < live.due_scheduled):
            live.due_scheduled = due
            heapq.heappush(self._due, (due, live.id))
            self.wakeup.set()

    def _publish(
        self,
        live: Live,
        given: int | None,
        *,
        name: str = "update",
        fly: bytes | None = None,
        record: TaskRecord | None = None,
    ) -> None:
        # Strictly increasing per task. With bus ids every replica computes the same ids: the
        # same messages in the same order through the same gate.
        eid = live.last_event_id + 1 if given is None else max(given, live.last_event_id + 1)
        live.last_event_id = eid
        item = Item(eid, name=name, fly=fly, record=record)
        ring = live.ring
        if len(ring) == ring.maxlen:
            live.ring_bytes -= ring[0].size
            live.ring_complete = False
        ring.append(item)
        live.ring_bytes += item.size
        while live.ring_bytes > self.ring_max_bytes and len(ring) > 1:
            live.ring_bytes -= ring.popleft().size  # forget the oldest: bytes are bounded
            live.ring_complete = False
        for sub in live.subscribers:
            sub.push(item)

    # -- timers ---------------------------------------------------------------------------

    def due_at(self) -> float | None:
        """The earliest gate deadline (stale entries are dropped lazily)."""
        while self._due:
            when, tid = self._due[0]
            live = self._live.get(tid)
            if live is None or live.due_scheduled != when:  # superseded by an earlier entry
                heapq.heappop(self._due)
                continue
            due = live.gate.due
            if due is None:  # what was held has gone
                heapq.heappop(self._due)
                live.due_scheduled = None
            elif due <= when:
                return due
            else:  # the deadline moved later: re-file the entry there
                heapq.heapreplace(self._due, (due, tid))
                live.due_scheduled = due
        return None

    def expire(self) -> None:
        """Release whatever the gates held past their bounds."""
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            when, tid = heapq.heappop(self._due)
            live = self._live.get(tid)
            if live is not None and live.due_scheduled == when:
                live.due_scheduled = None
                self._emit(live, live.gate.expire(now))  # files the next deadline, if any

    # -- watchers -------------------------------------------------------------------------

    def subscribe(self, rec: TaskRecord, last_event_id: int | None = None) -> Subscriber:
        """A new subscriber, already holding what it must see first.

        Without `last_event_id` (or when the ring no longer reaches back that far) it starts
        with a snapshot `update`; with one, it starts with exactly the events after that id.
        Registration and the snapshot happen in one synchronous step, so no event can fall
        between them. For an ended task the subscriber is finished at once.
        """
        live = self.track(rec)
        sub = Subscriber(rec.id, self.subscriber_buffer)
        missed = self._since(live, last_event_id)
        if missed is None:
            snap = live.record
            sub.push(Item(live.last_event_id, record=snap))
            if snap.terminal:
                sub.finish()
                return sub
        else:
            for item in missed:
                sub.push(item)
        if live.ended:
            sub.finish()
        else:
            live.subscribers.add(sub)
        return sub

    @staticmethod
    def _since(live: Live, last_event_id: int | None) -> list[Item] | None:
        if last_event_id is None or not 0 <= last_event_id <= live.last_event_id:
            return None  # not an id of this task's stream (or from before a restart)
        ring = live.ring
        if last_event_id == live.last_event_id and (ring or live.ring_complete):
            return []
        if not live.ring_complete and (not ring or last_event_id < ring[0].event_id):
            return None  # the ring no longer holds everything missed
        return [item for item in ring if item.event_id > last_event_id]

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscriber_dropped += sub.dropped
        sub.dropped = 0  # counted once, even if unsubscribed twice
        live = self._live.get(sub.task_id)
        if live is not None:
            live.subscribers.discard(sub)

    def stats(self) -> dict[str, int]:
        """Counters for `GET /api/v1/stats`."""
        live = [t for t in self._live.values() if not t.ended]
        return {
            "tasks": len(self._live),
            "tasks_live": len(live),
            "subscribers": sum(len(t.subscribers) for t in live),
            "subscriber_dropped_total": self.subscriber_dropped,
            "fly_dropped_unknown_total": self.fly_dropped_unknown,
            "fly_late_dropped_total": sum(t.gate.late for t in self._live.values()),
        }

    def reset(self) -> None:
        """Forget every live task (their subscribers are finished): rebuilt from the store."""
        self.close_all()
        self._live.clear()
        self._ended.clear()
        self._due.clear()

    def close_all(self) -> None:
        """Finish every subscriber (gateway shutdown): their streams end after draining."""
        for live in self._live.values():
            for sub in live.subscribers:
                sub.finish()
            live.subscribers.clear()


__all__ = ["Live", "TaskRegistry"]
