"""The task service as every front door sees it: REST, SSE, A2A and MCP are shells around this.

This module only declares the surface (typed views, updates, errors and the `TaskService`
protocol). The implementation lives with the task state (`tasks.py` and its store); the doors
(`app.py` for REST/SSE, `a2a/`, `mcp/`) depend on this protocol only, so each can be tested
against the real service and none reaches into another's internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import msgspec

#: Terminal task statuses; `paused` is not terminal (a resume continues the task).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})


class TaskView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A task as a client sees it (the JSON of `GET /api/v1/mesh/{id}`)."""

    id: str
    status: str  # pending | running | paused | succeeded | failed | canceled
    progress: float = 0.0  # 0..1
    route: list[str] = []
    actor: str | None = None
    created_at: str = ""
    updated_at: str = ""
    flow: str | None = None
    message: str | None = None
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET  # {"type"?, "message", ...} or a string from upstream sidecars
    pause: dict[str, Any] | None = None  # the handler's `x-asya-pause` object while paused
    payload: Any = msgspec.UNSET  # the payload the task was created with (A2A history needs it)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class FlyUpdate(msgspec.Struct, kw_only=True):
    """One FLY, live: `data` is the FLY dict as the handler yielded it."""

    event_id: int
    data: dict[str, Any]


class StatusUpdate(msgspec.Struct, kw_only=True):
    """The task changed (or this is the first update of a watch: the current state)."""

    event_id: int
    task: TaskView


TaskUpdate = FlyUpdate | StatusUpdate

#: Where a listing stands: (created_at as stored, id) of a task, newest first.
Cursor = tuple[float, str]


class Listed(msgspec.Struct, kw_only=True, frozen=True):
    """One task of a listing and the cursor to continue after it (`recent(before=cursor)`)."""

    task: TaskView
    cursor: Cursor


class ServiceError(Exception):
    """Base of the errors a door maps to its own protocol's error shape."""


class UnknownTask(ServiceError, LookupError):
    """No such task (or not visible to this caller)."""


class UnknownActor(ServiceError, ValueError):
    """A create whose first actor has no queue; the message names the actor and the queue."""


class UnknownFlow(ServiceError, ValueError):
    """A create naming a flow that is not configured."""


class NotPaused(ServiceError):
    """A resume for a task that is not paused."""


class AlreadyTerminal(ServiceError):
    """A cancel (or resume) for a task that already ended."""


class Unavailable(ServiceError):
    """The service cannot take the request now (queue down, too many tasks)."""


class TaskService(Protocol):
    """What the doors may do with tasks."""

    async def create(
        self,
        *,
        route: list[str],
        payload: Any,
        headers: dict[str, Any] | None = None,
        deadline_seconds: float | None = None,
        flow: str | None = None,
    ) -> TaskView:
        """Create the task and enqueue its envelope; raises UnknownActor / Unavailable."""
        ...

    async def get(self, task_id: str) -> TaskView:
        """The task now; raises UnknownTask."""
        ...

    async def cancel(self, task_id: str) -> TaskView:
        """Cancel (idempotent for a canceled task); raises UnknownTask, AlreadyTerminal."""
        ...

    async def resume(
        self, task_id: str, *, patch: dict[str, Any], message: dict[str, Any] | None = None
    ) -> TaskView:
        """Continue a paused task with `patch` merged into its payload (and `message`
        appended to `payload.a2a.task.history`); raises UnknownTask, NotPaused."""
        ...

    def watch(
        self, task_id: str, last_event_id: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[TaskUpdate]]:
        """Updates of one task: first a `StatusUpdate` with the current state (or, with
        `last_event_id`, the missed events from the replay window), then live ones. The
        iterator ends after the terminal update. Subscribed before the snapshot is read, so
        nothing falls between them. Raises UnknownTask on entry."""
        ...

    async def recent(self, limit: int, before: Cursor | None = None) -> list[Listed]:
        """At most `limit` of the tasks the caller may see, newest first (by creation, then
        id), strictly after `before`; fewer than `limit` means there are no more. Raises
        Unavailable when the store cannot answer."""
        ...


__all__ = [
    "TERMINAL_STATUSES",
    "AlreadyTerminal",
    "Cursor",
    "FlyUpdate",
    "Listed",
    "NotPaused",
    "ServiceError",
    "StatusUpdate",
    "TaskService",
    "TaskUpdate",
    "TaskView",
    "Unavailable",
    "UnknownActor",
    "UnknownFlow",
    "UnknownTask",
]
