"""An in-process `TaskService` for the A2A shell tests, until the gateway's own one is mounted.

It follows service.py's contract the way the door relies on it: event ids dense from 1 (the
creation is event 1), `watch(id)` starts with the current state as a `StatusUpdate` carrying
the latest event id, `watch(id, n)` replays the events after `n` from a bounded ring (or, past
the ring, starts with a snapshot), then goes live and ends after the terminal update; `recent`
lists newest first by (creation time, id). Tests drive the "mesh" with `fly()` and `report()`.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from asya_gateway.service import (
    AlreadyTerminal,
    Cursor,
    FlyUpdate,
    Listed,
    NotPaused,
    StatusUpdate,
    TaskUpdate,
    TaskView,
    UnknownActor,
    UnknownTask,
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Task:
    def __init__(self, view: TaskView, ring: int) -> None:
        self.view = view
        self.events: deque[TaskUpdate] = deque(maxlen=ring)
        self.last = 0
        self.changed = anyio.Event()
        self.cursor: Cursor = (0.0, view.id)  # set by `create`: its creation number


class MemService:
    """Tasks in a dict; `created` records each create call (route, payload, headers)."""

    def __init__(self, *, ring: int = 10_000, actors: set[str] | None = None) -> None:
        self.tasks: dict[str, _Task] = {}
        self.ring = ring
        self.actors = actors
        self.created: list[dict[str, Any]] = []
        self.resumed: list[dict[str, Any]] = []
        self.task_created = anyio.Event()
        self.was_resumed = anyio.Event()
        self._created = itertools.count(1)

    # -- the mesh side ----------------------------------------------------------------------

    def _push(self, t: _Task, make: Any) -> None:
        t.last += 1
        t.events.append(make(t.last))
        t.changed.set()
        t.changed = anyio.Event()

    def fly(self, task_id: str, data: dict[str, Any]) -> None:
        t = self.tasks[task_id]
        self._push(t, lambda n: FlyUpdate(event_id=n, data=data))

    def report(self, task_id: str, status: str, **fields: Any) -> None:
        t = self.tasks[task_id]
        if t.view.terminal:
            return
        t.view = msgspec.structs.replace(t.view, status=status, updated_at=_now(), **fields)
        view = t.view
        self._push(t, lambda n: StatusUpdate(event_id=n, task=view))

    # -- TaskService ------------------------------------------------------------------------

    async def create(
        self,
        *,
        route: list[str],
        payload: Any,
        headers: dict[str, Any] | None = None,
        deadline_seconds: float | None = None,
        flow: str | None = None,
        task_id: str | None = None,
    ) -> TaskView:
        if self.actors is not None and route[0] not in self.actors:
            raise UnknownActor(f"no queue for actor {route[0]!r}")
        tid = task_id or str(uuid.uuid4())
        now = _now()
        view = TaskView(
            id=tid, status="pending", route=route, created_at=now, updated_at=now,
            flow=flow, payload=payload, actor=route[0],
        )  # fmt: skip
        t = self.tasks[tid] = _Task(view, self.ring)
        t.cursor = (float(next(self._created)), tid)
        self._push(t, lambda n: StatusUpdate(event_id=n, task=view))
        self.created.append({"id": tid, "route": route, "payload": payload, "headers": headers})
        self.task_created.set()
        self.task_created = anyio.Event()
        return view

    async def get(self, task_id: str) -> TaskView:
        if task_id not in self.tasks:
            raise UnknownTask(task_id)
        return self.tasks[task_id].view

    async def cancel(self, task_id: str) -> TaskView:
        view = await self.get(task_id)
        if view.status == "canceled":
            return view
        if view.terminal:
            raise AlreadyTerminal(f"task {task_id!r} already {view.status}")
        self.report(task_id, "canceled")
        return self.tasks[task_id].view

    async def resume(
        self, task_id: str, *, patch: dict[str, Any], message: dict[str, Any] | None = None
    ) -> TaskView:
        view = await self.get(task_id)
        if view.status != "paused":
            raise NotPaused(f"task {task_id!r} is not paused (it is {view.status})")
        self.resumed.append({"id": task_id, "patch": patch, "message": message})
        self.was_resumed.set()
        self.report(task_id, "running", pause=None)
        return self.tasks[task_id].view

    async def recent(self, limit: int, before: Cursor | None = None) -> list[Listed]:
        cursors = sorted((t.cursor for t in self.tasks.values()), reverse=True)
        after = [c for c in cursors if before is None or c < before][: max(0, limit)]
        return [Listed(task=self.tasks[c[1]].view, cursor=c) for c in after]

    @contextlib.asynccontextmanager
    async def watch(
        self, task_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[AsyncIterator[TaskUpdate]]:
        if task_id not in self.tasks:
            raise UnknownTask(task_id)
        t = self.tasks[task_id]

        async def updates() -> AsyncIterator[TaskUpdate]:
            if last_event_id is None or (t.events and t.events[0].event_id > last_event_id + 1):
                yield StatusUpdate(event_id=t.last, task=t.view)
                seen = t.last
            else:
                seen = last_event_id
            while True:
                pending = [u for u in t.events if u.event_id > seen]
                if not pending:
                    if t.view.terminal:
                        return
                    await t.changed.wait()  # no await between the check and here: no lost wakeup
                    continue
                for u in pending:
                    seen = u.event_id
                    yield u
                    if isinstance(u, StatusUpdate) and u.task.terminal:
                        return

        yield updates()


__all__ = ["MemService"]
