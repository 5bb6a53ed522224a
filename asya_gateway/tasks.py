"""The task registry: per-task state, monotonic status, the replay ring and the subscribers.

Synchronous and I/O-free (the only async piece is a subscriber's `wait`): HTTP handlers call
into it, the SSE response drains subscribers. Tasks live in memory; a restart loses them.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import msgspec

from .events import Event, FlyIn, StatusIn, encode_sse

#: Status rank: a report of lower rank than the current status is stale and ignored.
RANK: Final = {"pending": 0, "running": 1, "paused": 2, "succeeded": 3, "failed": 3, "canceled": 3}
TERMINAL: Final = frozenset({"succeeded", "failed", "canceled"})
#: The sidecar's progress states fold into `running` (as upstream's mesh-api does).
_PHASE_OF: Final = {"received": "running", "processing": "running", "completed": "running"}
#: Upstream's progress weights per state (digest §4.10).
_WEIGHT: Final = {"received": 0.1, "processing": 0.5, "completed": 1.0}


class UnknownTask(LookupError):
    """No task with that id (never created here, evicted, or lost with a restart)."""


class TooManyTasks(RuntimeError):
    """The registry is full of live tasks; nothing can be evicted."""


def rfc3339(ts: float) -> str:
    """Upstream's timestamp format: RFC 3339, UTC, whole seconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_fraction(state: str, data: dict[str, Any]) -> float | None:
    """Upstream's `(len(prev) + weight) / total` for a progress report, or None if not one.

    `actor` locates the reporting actor in the route, so the `completed` report (which carries
    the *output* route, already shifted past the actor) lands on the same step.
    """
    weight = _WEIGHT.get(state)
    prev, curr, nxt = data.get("prev"), data.get("curr") or "", data.get("next")
    if weight is None or not isinstance(prev, list) or not isinstance(nxt, list):
        return None
    route = [*prev, *([curr] if curr else []), *nxt]
    if not route:
        return None
    actor = data.get("actor") or curr
    if actor == curr:
        idx = len(prev)
    elif actor in prev:
        idx = len(prev) - 1 - prev[::-1].index(actor)
    else:
        idx = len(prev)
    return min(1.0, (idx + weight) / len(route))


class Subscriber:
    """One client stream's queue of encoded SSE events."""

    __slots__ = ("_wakeup", "dropped", "finished", "queue", "task_id")

    def __init__(self, task_id: str, maxlen: int) -> None:
        self.task_id = task_id
        # Bounded; overflow drops the OLDEST event (a late client prefers fresh tokens and the
        # terminal update, which is always the newest) and counts it in `dropped`.
        self.queue: deque[bytes] = deque(maxlen=maxlen)
        self.dropped = 0
        self.finished = False  # no more events will come: drain `queue`, then close
        self._wakeup = anyio.Event()

    def push(self, chunk: bytes) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(chunk)
        self._wakeup.set()

    def finish(self) -> None:
        self.finished = True
        self._wakeup.set()

    def drain(self) -> bytes:
        """Everything queued, as one chunk (one socket write per wake-up)."""
        chunk = b"".join(self.queue)
        self.queue.clear()
        return chunk

    async def wait(self) -> None:
        """Return once something is queued or the stream is finished."""
        if self.queue or self.finished:
            return
        self._wakeup = anyio.Event()
        await self._wakeup.wait()


class Task:
    """One task's state, its ring of recent events and its subscribers."""

    def __init__(self, task_id: str, route: list[str], now: float, ring_size: int) -> None:
        self.id = task_id
        self.route = route
        self.status = "pending"
        self.state = "pending"  # the last raw state reported (received/processing/...)
        self.actor: str | None = route[0] if route else None
        self.progress = 0.0
        self.message: str | None = None
        self.result: Any = msgspec.UNSET
        self.error: Any = msgspec.UNSET
        self.created_at = now
        self.updated_at = now
        self.last_event_id = 0
        # Bounded replay ring for Last-Event-ID; overflow forgets the oldest events (a client
        # resuming from before the ring gets a fresh snapshot instead).
        self.ring: deque[tuple[int, bytes]] = deque(maxlen=ring_size)
        self.ring_bytes = 0  # also bounded in bytes by the registry (ring_max_bytes)
        self.subscribers: set[Subscriber] = set()
        self.fly_count = 0
        # Terminal status stored but its update not yet published (see TaskRegistry's linger).
        self.finalizing = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def view(self) -> dict[str, Any]:
        """The JSON of `GET /api/v1/mesh/{id}`."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "route": self.route,
            "actor": self.actor,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }
        return self._with_outcome(out)

    def update_data(self) -> dict[str, Any]:
        """The `data` of an `update` SSE event."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "state": self.state,
            "progress_percent": round(self.progress * 100, 2),
            "actor": self.actor,
            "timestamp": rfc3339(self.updated_at),
        }
        return self._with_outcome(out)

    def _with_outcome(self, out: dict[str, Any]) -> dict[str, Any]:
        """Add the optional message, result and error (each only when there is one)."""
        if self.message is not None:
            out["message"] = self.message
        if self.result is not msgspec.UNSET:
            out["result"] = self.result
        if self.error is not msgspec.UNSET:
            out["error"] = self.error
        return out


_encoder: Final = msgspec.json.Encoder()


class TaskRegistry:
    """All tasks of this gateway, bounded: the oldest finished tasks are evicted first."""

    def __init__(
        self,
        *,
        ring_size: int = 1000,
        ring_max_bytes: int = 1024 * 1024,
        subscriber_buffer: int = 1024,
        max_tasks: int = 2000,
        terminal_linger: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ring_size = ring_size
        self.ring_max_bytes = ring_max_bytes
        # FLYs travel from an actor's sidecar, the terminal status from x-sink's: separate
        # processes and connections, so the last FLYs can land just after the terminal status.
        # With a linger, a sidecar-reported `succeeded`/`failed` is stored at once (GET and
        # pre-flights see it) but published, and streams closed, only `terminal_linger`
        # seconds later; FLYs arriving meanwhile are still delivered, in front of it.
        self.terminal_linger = terminal_linger
        # FIFO, as the linger is constant; bounded by max_tasks (a task goes terminal once).
        self._lingering: deque[tuple[float, Task]] = deque()
        self._linger_wakeup = anyio.Event()
        self.subscriber_buffer = subscriber_buffer
        self.max_tasks = max_tasks
        self.clock = clock
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self.fly_dropped_unknown = 0  # FLYs for unknown or finished tasks (accepted, dropped)
        self.stale_ignored = 0
        self.subscriber_dropped = 0  # events dropped from slow clients' buffers (closed streams)

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def create(self, route: list[str], task_id: str | None = None) -> Task:
        """Register a new `pending` task; raises `TooManyTasks` when full of live tasks."""
        if len(self._tasks) >= self.max_tasks:
            self._evict()
        task = Task(task_id or str(uuid.uuid4()), route, self.clock(), self.ring_size)
        self._tasks[task.id] = task
        return task

    def _evict(self) -> None:
        for tid, task in self._tasks.items():
            if task.terminal and not task.subscribers and not task.finalizing:
                del self._tasks[tid]
                return
        raise TooManyTasks(f"{len(self._tasks)} live tasks (max_tasks={self.max_tasks})")

    # -- ingest ---------------------------------------------------------------------------

    def apply(self, task_id: str, event: Event) -> bool:
        """Apply one event; True if it changed anything (and was published).

        Raises `UnknownTask` for a status event with an unknown id; a FLY for an unknown or
        finished task is accepted and dropped (FLY is at-most-once, never stored).
        """
        task = self._tasks.get(task_id)
        if isinstance(event, FlyIn):
            if task is None or (task.terminal and not task.finalizing):
                self.fly_dropped_unknown += 1
                return False
            task.fly_count += 1
            self._publish(task, event.name, event.data)
            return True
        if task is None:
            raise UnknownTask(task_id)
        return self._apply_status(task, event)

    def _apply_status(self, task: Task, event: StatusIn) -> bool:
        phase = _PHASE_OF.get(event.status, event.status)
        if task.terminal or RANK[phase] < RANK[task.status]:
            self.stale_ignored += 1  # stale: ignored, still answered 204 (as upstream)
            return False
        data = event.data
        task.status = phase
        task.state = event.status
        task.updated_at = self.clock()
        actor = data.get("actor") or data.get("current_actor_name") or data.get("curr")
        if isinstance(actor, str) and actor:
            task.actor = actor
        if isinstance(data.get("message"), str):
            task.message = data["message"]
        fraction = progress_fraction(event.status, data)
        if fraction is not None:
            task.progress = max(task.progress, fraction)  # progress never goes backwards
        if phase == "succeeded":
            task.progress = 1.0
            task.result = data.get("result")
        elif phase == "failed":
            task.error = data.get("error") or data.get("error_details") or "failed"
            if data.get("error_details") is not None:
                task.message = str(data.get("error_details"))
        if phase in ("succeeded", "failed") and self.terminal_linger > 0:
            task.finalizing = True
            self._lingering.append((self.clock() + self.terminal_linger, task))
            self._linger_wakeup.set()
            return True
        self._publish_update(task)
        return True

    def cancel(self, task_id: str) -> Task:
        """Cancel (idempotent); raises `UnknownTask`."""
        task = self._tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        if not task.terminal:
            self._apply_status(task, StatusIn("canceled", {}))
        return task

    def fail(self, task_id: str, error: str) -> None:
        """Mark a task failed from the gateway's side (e.g. its envelope could not be queued)."""
        task = self._tasks.get(task_id)
        if task is not None and not task.terminal:
            self._apply_status(task, StatusIn("failed", {"error": error}))

    # -- fan-out --------------------------------------------------------------------------

    def _publish_update(self, task: Task) -> None:
        task.finalizing = False
        self._publish(task, "update", _encoder.encode(task.update_data()))
        if task.terminal:
            for sub in task.subscribers:
                sub.finish()
            task.subscribers.clear()

    def _publish(self, task: Task, name: str, data: bytes) -> None:
        task.last_event_id += 1
        chunk = encode_sse(name, data, task.last_event_id)  # encoded once, shared by all
        ring = task.ring
        if len(ring) == ring.maxlen:
            task.ring_bytes -= len(ring[0][1])
        ring.append((task.last_event_id, chunk))
        task.ring_bytes += len(chunk)
        while task.ring_bytes > self.ring_max_bytes and len(ring) > 1:
            task.ring_bytes -= len(ring.popleft()[1])  # forget the oldest: bytes are bounded too
        for sub in task.subscribers:
            sub.push(chunk)

    def subscribe(self, task_id: str, last_event_id: int | None = None) -> Subscriber:
        """A new subscriber, already holding what it must see first; raises `UnknownTask`.

        Without `last_event_id` (or when the ring no longer reaches back that far) it starts
        with a snapshot `update`; with one, it starts with exactly the events after that id.
        Registration and the snapshot happen in one synchronous step, so no event can fall
        between them. For a terminal task the subscriber is finished at once.
        """
        task = self._tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        sub = Subscriber(task_id, self.subscriber_buffer)
        missed = self._since(task, last_event_id)
        if missed is None:
            sub.push(encode_sse("update", _encoder.encode(task.update_data()), task.last_event_id))
        else:
            for chunk in missed:
                sub.push(chunk)
        if task.terminal and not (task.finalizing and missed is not None):
            sub.finish()  # its snapshot (or replay) already holds the terminal state
        else:
            task.subscribers.add(sub)  # live, or resuming while the terminal update lingers
        return sub

    @staticmethod
    def _since(task: Task, last_event_id: int | None) -> list[bytes] | None:
        if last_event_id is None or not 0 <= last_event_id <= task.last_event_id:
            return None
        oldest = task.ring[0][0] if task.ring else task.last_event_id + 1
        if last_event_id < oldest - 1:
            return None  # the ring no longer holds everything missed
        return [chunk for eid, chunk in task.ring if eid > last_event_id]

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscriber_dropped += sub.dropped
        sub.dropped = 0  # counted once, even if unsubscribed twice
        task = self._tasks.get(sub.task_id)
        if task is not None:
            task.subscribers.discard(sub)

    async def run_finalizer(self) -> None:
        """Publish lingering terminal updates when their time comes (runs for the app's life)."""
        while True:
            if not self._lingering:
                self._linger_wakeup = anyio.Event()
                await self._linger_wakeup.wait()
                continue
            due, task = self._lingering[0]
            wait = due - self.clock()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            self._lingering.popleft()
            if task.finalizing:
                self._publish_update(task)

    def stats(self) -> dict[str, int]:
        """Counters for `GET /api/v1/stats`."""
        live = [t for t in self._tasks.values() if not t.terminal]
        return {
            "tasks": len(self._tasks),
            "tasks_live": len(live),
            "subscribers": sum(len(t.subscribers) for t in live),
            "subscriber_dropped_total": self.subscriber_dropped,
            "fly_dropped_unknown_total": self.fly_dropped_unknown,
            "stale_ignored_total": self.stale_ignored,
        }

    def close_all(self) -> None:
        """Finish every subscriber (gateway shutdown): their streams end after draining."""
        while self._lingering:
            _, task = self._lingering.popleft()
            if task.finalizing:
                self._publish_update(task)
        for task in self._tasks.values():
            for sub in task.subscribers:
                sub.finish()
            task.subscribers.clear()


__all__ = [
    "RANK",
    "TERMINAL",
    "Subscriber",
    "Task",
    "TaskRegistry",
    "TooManyTasks",
    "UnknownTask",
    "progress_fraction",
    "rfc3339",
]
