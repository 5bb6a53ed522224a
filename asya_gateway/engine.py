"""`TaskEngine`: the `TaskService` every door uses, over the store and the live fan-out.

Order of effects for every change: the store first (durable, atomic), then the live side
(`TaskRegistry`: ring, subscribers) and the cancellation feed; the caller (a sidecar's POST) is
answered after that. Timers (task deadlines, FLY-gate bounds) run in `run`, owned by the app's
task group. Knows no HTTP: the REST/SSE shell is `app.py`.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import msgspec
import structlog

from asya_mesh.events import Event, FlyEvent, StatusEvent
from asya_mesh.transports import QueueMissing, queue_name

from .auth import current_principal, may_see
from .bus import Bus, LocalBus, Message, fly_message
from .envelopes import first_envelope, resumed_envelope
from .flows import Flows
from .rounds import plan_rounds
from .service import (
    AlreadyTerminal,
    Cursor,
    Listed,
    NotPaused,
    TaskUpdate,
    TaskView,
    Unavailable,
    UnknownActor,
    UnknownFlow,
    UnknownTask,
)
from .state import TaskRecord, apply_statuses, cancel, fail, resumed, timed_out, view
from .store import StoreError, TaskStore
from .subscribers import Subscriber
from .taskfeed import TaskFeed
from .tasks import TaskRegistry

#: Sends one envelope body to a queue, durably; the app's raises `QueueMissing` for a queue no
#: consumer declared (the transport's `send(..., must_exist=True)`).
Enqueue = Callable[[str, bytes], Awaitable[None]]

_log = structlog.get_logger("asya_gateway")
_encoder: Final = msgspec.json.Encoder()


class TaskEngine:
    """Tasks: create, get, cancel, resume, watch, and the sidecars' events."""

    def __init__(
        self,
        store: TaskStore,
        registry: TaskRegistry,
        enqueue: Enqueue,
        *,
        base_url: str,
        namespace: str,
        flows: Flows | None = None,
        feed_buffer: int = 4096,
        bus: Bus | None = None,
        mesh_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bus: Bus = bus or LocalBus()
        self.fly_publish_failed = 0
        self.registry = registry
        self.enqueue = enqueue
        self.base_url = base_url
        # Where sidecars report (x-asya-gateway-url): the mesh listener, else base_url.
        self._report_url = mesh_url or base_url
        self.namespace = namespace
        self.flows = flows or Flows()
        self.clock = clock
        self.feed = TaskFeed(feed_buffer)
        self._deadlines: list[tuple[float, str]] = []

    # -- TaskService ----------------------------------------------------------------------

    async def create(
        self,
        *,
        route: list[str],
        payload: Any,
        headers: dict[str, Any] | None = None,
        deadline_seconds: float | None = None,
        flow: str | None = None,
        on_stored: Callable[[TaskRecord], None] | None = None,
    ) -> TaskView:
        """Create the task and enqueue its envelope; `on_stored` runs between the two (a
        stream subscribes there, so it misses nothing)."""
        if flow is not None:
            f = self.flows.get(flow)
            if f is None:
                raise UnknownFlow(f"unknown flow {flow!r}")
            route = route or list(f.route)
            if deadline_seconds is None:
                deadline_seconds = f.timeout
        now = self.clock()
        rec = TaskRecord(
            id=str(uuid.uuid4()),
            route=route,
            created_at=now,
            updated_at=now,
            actor=route[0],
            deadline_at=None if deadline_seconds is None else now + deadline_seconds,
            flow=flow,
            payload=payload,
            owner=current_principal.get().owner,  # `key:NAME` / `jwt:SUB`, never a secret
        )
        try:
            await self.store.insert(rec)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        self.registry.track(rec, new=True)
        if rec.deadline_at is not None:
            self._watch_deadline(rec.deadline_at, rec.id)
        if on_stored is not None:
            on_stored(rec)
        queue = queue_name(self.namespace, route[0])
        try:
            await self.enqueue(queue, first_envelope(rec, headers, self._report_url))
        except QueueMissing:
            # Only the first actor is checked here; a later unknown hop fails at its sidecar.
            reason = (
                f"unknown actor {route[0]!r}: its queue {queue!r} does not exist"
                " (no sidecar of that actor has declared it)"
            )
            error = {"type": "UnknownActor", "message": reason}
            await self._change(rec.id, lambda r: fail(r, self.clock(), error, reason))
            raise UnknownActor(reason) from None
        except Exception as exc:  # any other transport failure becomes the task's failure
            reason = f"could not enqueue the envelope: {exc}"
            await self._change(rec.id, lambda r: fail(r, self.clock(), reason, reason))
            raise Unavailable(reason) from None
        return view(rec)

    async def record(self, task_id: str) -> TaskRecord:
        try:
            rec = await self.store.get(task_id)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        if rec is None or not may_see(current_principal.get(), rec.owner):
            # Another owner's task is as unknown as a missing one: no existence leak.
            raise UnknownTask(f"unknown task {task_id!r}")
        return rec

    async def get(self, task_id: str) -> TaskView:
        return view(await self.record(task_id))

    async def cancel(self, task_id: str) -> TaskView:
        await self.record(task_id)  # the owner check (an owner never changes)
        rec, changed = await self._change(task_id, lambda r: cancel(r, self.clock()))
        if rec is None:
            raise UnknownTask(f"unknown task {task_id!r}")
        if not changed and rec.status != "canceled":
            raise AlreadyTerminal(f"task {task_id!r} already {rec.status}")
        return view(rec)

    async def resume(
        self, task_id: str, *, patch: dict[str, Any], message: dict[str, Any] | None = None
    ) -> TaskView:
        rec = await self.record(task_id)
        envelope = rec.envelope
        if rec.status != "paused" or not isinstance(envelope, dict):
            raise NotPaused(f"task {task_id!r} is {rec.status}, not paused")
        # Claim it first (only one resume wins), then enqueue; put it back if that fails.
        claimed, changed = await self._change(task_id, lambda r: resumed(r, self.clock()))
        if claimed is None or not changed:
            raise NotPaused(f"task {task_id!r} is no longer paused")
        curr, body = resumed_envelope(envelope, patch, message)
        try:
            await self.enqueue(queue_name(self.namespace, curr), body)
        except Exception as exc:
            await self._change(
                task_id, lambda r: msgspec.structs.replace(r, status="paused", envelope=envelope)
            )
            raise Unavailable(f"could not enqueue the resumed envelope: {exc}") from None
        return view(claimed)

    @asynccontextmanager
    async def watch(
        self, task_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[AsyncIterator[TaskUpdate]]:
        sub = await self.subscribe(task_id, last_event_id)
        try:
            yield _updates(sub)
        finally:
            self.registry.unsubscribe(sub)

    async def recent(self, limit: int, before: Cursor | None = None) -> list[Listed]:
        principal = current_principal.get()
        # may_see, as a store filter: open and mesh see every owner's tasks, a client its own.
        owner = None if may_see(principal, None) else principal.owner
        try:
            recs = await self.store.recent(limit, owner=owner, before=before)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        return [Listed(task=view(r), cursor=(r.created_at, r.id)) for r in recs]

    # -- for the REST/SSE shell -----------------------------------------------------------

    async def subscribe(self, task_id: str, last_event_id: int | None = None) -> Subscriber:
        """A live subscriber (the caller unsubscribes); raises UnknownTask."""
        live = self.registry.get(task_id)
        rec = live.record if live is not None else await self.record(task_id)
        if not may_see(current_principal.get(), rec.owner):
            raise UnknownTask(f"unknown task {task_id!r}")
        return self.registry.subscribe(rec, last_event_id)

    async def ingest(self, task_id: str, events: list[Event]) -> None:
        """A sidecar's events, in order; statuses are stored before this returns.
        Raises UnknownTask for a status of an unknown task (FLYs for one are dropped)."""
        if await self.ingest_many({task_id: events}):
            raise UnknownTask(f"unknown task {task_id!r}")

    async def ingest_many(self, batch: dict[str, list[Event]]) -> list[str]:
        """Many tasks' events (each task's in order), in rounds (`rounds.plan_rounds`): per
        round one store call for every task's statuses and one publish for the changes, one
        for the FLYs. Returns the tasks whose statuses found no task (their FLYs are dropped).
        Every status is stored before this returns."""
        unknown: list[str] = []
        for rnd in plan_rounds(batch):
            if rnd.statuses:
                await self._apply_statuses(rnd.statuses, unknown)
            if rnd.flys:
                await self._publish_flys(rnd.flys)
        return unknown

    async def _apply_statuses(
        self, runs: list[tuple[str, list[StatusEvent]]], unknown: list[str]
    ) -> None:
        """Each task's consecutive statuses in one store change (a hop's received and
        processing arrive together); every record a change went through is published."""
        now = self.clock()
        steps: list[list[TaskRecord]] = [[] for _ in runs]

        def change(i: int) -> Callable[[TaskRecord], TaskRecord | None]:
            def apply(rec: TaskRecord) -> TaskRecord | None:
                steps[i] = apply_statuses(rec, runs[i][1], now)  # a store may run it again
                return steps[i][-1] if steps[i] else None

            return apply

        jobs = [(tid, change(i)) for i, (tid, _) in enumerate(runs)]
        try:
            outcomes = await self.store.update_many(jobs)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        msgs: list[Message] = []
        failed: BaseException | None = None
        for (tid, _), outcome, out in zip(runs, outcomes, steps, strict=True):
            if isinstance(outcome, BaseException):
                failed = failed or outcome
                continue
            rec, changed = outcome
            if rec is None:
                unknown.append(tid)
            elif changed:
                msgs += [Message(task=tid, record=r) for r in out]
        await self._publish_changes(msgs)  # what was stored is published, even if one failed
        if isinstance(failed, StoreError):
            raise Unavailable(str(failed)) from None
        if failed is not None:
            raise failed

    async def _publish_flys(self, runs: list[tuple[str, list[FlyEvent]]]) -> None:
        if isinstance(self.bus, LocalBus):
            for task_id, _ in runs:
                if self.registry.get(task_id) is None:
                    rec = await self.store.get(task_id)  # e.g. after a restart
                    if rec is not None:
                        self.registry.track(rec)
        flys = [fly_message(tid, e) for tid, events in runs for e in events]
        try:
            await self.bus.publish_many(flys)
        except Exception as exc:  # FLY is at-most-once: dropped and counted
            self.fly_publish_failed += len(flys)
            tasks = sorted({tid for tid, _ in runs})
            _log.warning("FLYs not published", tasks=tasks[:10], n=len(flys), error=str(exc))

    # -- internals ------------------------------------------------------------------------

    async def _change(
        self, task_id: str, change: Callable[[TaskRecord], TaskRecord | None]
    ) -> tuple[TaskRecord | None, bool]:
        """Store a change; publish the new record."""
        try:
            rec, changed = await self.store.update(task_id, change)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        if rec is not None and changed:
            await self._publish_changes([Message(task=rec.id, record=rec)])
        return rec, changed

    async def _publish_changes(self, msgs: list[Message]) -> None:
        """Stored changes to every replica; if the bus fails, at least to this one's streams
        (they are stored, so GET and pre-flights see them anyway)."""
        if not msgs:
            return
        try:
            await self.bus.publish_many(msgs)
        except Exception as exc:
            tasks = sorted({m.task for m in msgs})
            _log.warning("change not published to the replicas", tasks=tasks[:10], error=str(exc))
            for msg in msgs:
                self._deliver(msg, None)

    def _deliver(self, msg: Message, eid: int | None) -> None:
        """One bus message, on every replica, in bus order."""
        rec = msg.record
        if rec is None:
            self.registry.fly(msg.task, FlyEvent(data=msg.fly, seq=msg.seq, n=msg.n), eid)
            return
        self.registry.changed(rec, eid)
        if rec.deadline_at is not None and not rec.terminal:
            self._watch_deadline(rec.deadline_at, rec.id)  # another replica's task, too
        self.feed.changed(rec)

    def _lost(self) -> None:
        """The bus lost messages: end every stream and feed (clients resume, on any replica),
        and forget the cached state (it may be stale: the next reads come from the store)."""
        self.close()
        self.registry.reset()
        self.registry.id_floor = self.bus.id_floor

    def _watch_deadline(self, when: float, task_id: str) -> None:
        heapq.heappush(self._deadlines, (when, task_id))
        self.registry.wakeup.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The bus, deadlines and FLY-gate bounds, for the app's life; started once listening."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._run_bus)
            task_status.started()
            await self._run_timers()

    async def _run_bus(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        def started() -> None:
            self.registry.id_floor = self.bus.id_floor
            task_status.started()

        await self.bus.run(self._deliver, self._lost, started)

    async def _run_timers(self) -> None:
        for when, tid in await self.store.deadlines():
            self._watch_deadline(when, tid)
        while True:
            self.registry.wakeup = anyio.Event()
            now = self.clock()
            self.registry.expire()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, tid = heapq.heappop(self._deadlines)
                try:
                    await self._change(tid, lambda r: timed_out(r, self.clock()))
                except Unavailable as exc:  # the store is down: try again shortly
                    _log.warning("deadline check failed", task_id=tid, error=str(exc))
                    heapq.heappush(self._deadlines, (now + 1.0, tid))
                    break
            times = [t for t in (self.registry.due_at(),) if t is not None]
            if self._deadlines:
                times.append(self._deadlines[0][0])
            wait = max(0.0, min(times) - self.clock()) if times else None
            with anyio.move_on_after(wait if wait is not None else 3600.0):
                await self.registry.wakeup.wait()

    def close(self) -> None:
        """Finish every stream and feed (shutdown)."""
        self.registry.close_all()
        self.feed.close()


async def _updates(sub: Subscriber) -> AsyncIterator[TaskUpdate]:
    while True:
        await sub.wait()
        for item in sub.drain():
            yield item.update()
        if sub.finished and not sub.queue:
            return


__all__ = ["Enqueue", "TaskEngine"]
