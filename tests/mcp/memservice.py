"""An in-process `TaskService` with scripted actors, for shell-level tests of the MCP door only
(the real service is exercised by the end-to-end tests against gateway + mesh processes).

Actors (the first of a route decides): `tokens` FLYs `payload["flys"]` (strings become
`{"partial": true, "text": s}`; default "You ", "asked: ", `payload["prompt"]`) every
`payload["delay"]` s, then succeeds with `payload["result"]` (default: the payload); `bad`
fails with `payload["message"]`; `hang` runs until canceled (its `finally` sets
`finally_ran[task_id]`); `late` fails as a sidecar would at the deadline (`{"type": "Timeout"}`)
once `deadline_seconds` passes.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from asya_gateway.service import (
    AlreadyTerminal,
    Cursor,
    FlyUpdate,
    Listed,
    StatusUpdate,
    TaskUpdate,
    TaskView,
    UnknownActor,
    UnknownTask,
)

ACTORS = ("tokens", "bad", "hang", "late")


@dataclass
class _Task:
    view: TaskView
    payload: Any
    deadline: float | None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    subscribers: list[MemoryObjectSendStream[TaskUpdate]] = field(default_factory=list)


class MemoryTaskService:
    """Tasks in a dict, each script run in the group of `async with svc.running()`."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.created: list[TaskView] = []
        self.cancels: list[str] = []
        self.finally_ran: dict[str, anyio.Event] = {}
        self._ids = itertools.count(1)
        self._events = itertools.count(1)
        self._tg: TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MemoryTaskService]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _publish(self, task: _Task, update: TaskUpdate) -> None:
        for s in list(task.subscribers):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await s.send(update)

    async def _set(self, task: _Task, status: str, **changes: Any) -> None:
        task.view = msgspec.structs.replace(task.view, status=status, **changes)
        await self._publish(task, StatusUpdate(event_id=next(self._events), task=task.view))
        if task.view.terminal:
            for s in task.subscribers:
                s.close()

    async def _script(self, task: _Task) -> None:
        actor, p = task.view.route[0], task.payload
        with task.scope:
            await self._set(task, "running", actor=actor)
            if actor == "tokens":
                flys = p.get("flys", ["You ", "asked: ", p["prompt"]] if "prompt" in p else [])
                for item in flys:
                    await anyio.sleep(float(p.get("delay", 0.02)))
                    data = {"partial": True, "text": item} if isinstance(item, str) else item
                    await self._publish(task, FlyUpdate(event_id=next(self._events), data=data))
                await self._set(task, "succeeded", result=p.get("result", p))
            elif actor == "bad":
                await self._set(
                    task, "failed", error={"type": "ValueError", "message": p["message"]}
                )
            elif actor == "late":
                await anyio.sleep(task.deadline or 0)
                await self._set(
                    task, "failed", error={"type": "Timeout", "message": "SLA deadline expired"}
                )
            else:
                done = self.finally_ran.setdefault(task.view.id, anyio.Event())
                try:
                    await anyio.sleep_forever()
                finally:
                    done.set()

    async def create(
        self,
        *,
        route: list[str],
        payload: Any,
        headers: dict[str, Any] | None = None,
        deadline_seconds: float | None = None,
        flow: str | None = None,
    ) -> TaskView:
        if route[0] not in ACTORS:
            raise UnknownActor(f"actor {route[0]!r} has no queue")
        assert self._tg is not None, "use `async with service.running()`"
        view = TaskView(
            id=f"task-{next(self._ids)}", status="pending", route=route, flow=flow, payload=payload
        )
        task = _Task(view, payload, deadline_seconds)
        self.tasks[view.id] = task
        self.created.append(view)
        self._tg.start_soon(self._script, task)
        return view

    async def recent(self, limit: int, before: Cursor | None = None) -> list[Listed]:
        """Newest first; a task's position is its creation number (ids are `task-N`)."""
        cursors = sorted(((float(i), v.id) for i, v in enumerate(self.created)), reverse=True)
        after = [c for c in cursors if before is None or c < before][: max(0, limit)]
        return [Listed(task=self.tasks[tid].view, cursor=(n, tid)) for n, tid in after]

    async def get(self, task_id: str) -> TaskView:
        if task_id not in self.tasks:
            raise UnknownTask(task_id)
        return self.tasks[task_id].view

    async def cancel(self, task_id: str) -> TaskView:
        task = self.tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        self.cancels.append(task_id)
        if task.view.status == "canceled":
            return task.view
        if task.view.terminal:
            raise AlreadyTerminal(task_id)
        task.scope.cancel()
        await self._set(task, "canceled")
        return task.view

    async def resume(
        self, task_id: str, *, patch: dict[str, Any], message: dict[str, Any] | None = None
    ) -> TaskView:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def watch(
        self, task_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[AsyncIterator[TaskUpdate]]:
        task = self.tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        send, receive = anyio.create_memory_object_stream[TaskUpdate](100)
        task.subscribers.append(send)
        send.send_nowait(StatusUpdate(event_id=0, task=task.view))
        if task.view.terminal:
            send.close()
        try:
            async with receive:
                yield receive
        finally:
            task.subscribers.remove(send)
            send.close()
