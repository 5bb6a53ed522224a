"""Folding a task's mesh updates, as the service replays them, into its A2A view and stream.

`watch(id, 0)` replays the task's log from the start (or, past the replay window, starts with
a snapshot); `catch_up` folds it up to the latest event id seen when we looked, so the first
`Task` a subscriber gets holds everything so far, and `task_events` then streams the rest live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import anyio
import anyio.lowlevel
import structlog

from asya_gateway.service import (
    ServiceError,
    StatusUpdate,
    TaskService,
    TaskUpdate,
    TaskView,
    UnknownTask,
)

from . import rpc
from .model import A2AArtifactUpdate
from .rpc import Call, RpcError
from .stream import Producer, sse_data
from .view import TaskA2A
from .wire import StreamWire

_log: Final = structlog.get_logger("asya.gateway.a2a")


async def latest_event_id(service: TaskService, task_id: str) -> int:
    """The id of the task's newest event (a watch's first update is the current state)."""
    async with service.watch(task_id) as updates:
        async for u in updates:
            return u.event_id
    return 0


async def catch_up(task: TaskA2A, updates: AsyncIterator[TaskUpdate], until: int) -> None:
    """Fold the replay into `task` up to event `until`; the iterator stays usable after."""
    if until <= 0:
        return
    first = True
    async for u in updates:
        if first and u.event_id > 1:
            task.mark_truncated()  # the replay window no longer holds the start
        first = False
        task.apply(u)
        if u.event_id >= until or task.terminal:
            break


def add_history(task: TaskA2A, message: dict[str, Any]) -> None:
    if all(m.get("messageId") != message.get("messageId") for m in task.history):
        task.history.append(message)


def task_events(
    service: TaskService,
    call: Call,
    task: TaskA2A,
    *,
    replay: bool,
    resumed: TaskView | None = None,
    message: dict[str, Any] | None = None,
) -> Producer:
    """The SSE events of one stream: the Task first (caught up when `replay`), then live
    events until a terminal or interrupted state; errors end it as a JSON-RPC error event."""

    wire = StreamWire(call.id, call.version, task.task_id, task.context_id)

    async def produce(emit: Callable[[bytes], Awaitable[None]]) -> None:
        try:
            until = await latest_event_id(service, task.task_id) if replay else 0
            async with service.watch(task.task_id, 0) as updates:
                await catch_up(task, updates, until)
                if message is not None:
                    add_history(task, message)
                if resumed is not None:
                    task.apply(StatusUpdate(event_id=0, task=resumed))
                await emit(wire.encode(task.snapshot()))
                if task.final:
                    return
                flushed = False
                async for u in updates:
                    events = task.apply(u)
                    if events:
                        await emit(wire.encode_all(events))
                        if not flushed and isinstance(events[-1], A2AArtifactUpdate):
                            # The first chunk goes out now rather than with the rest of its
                            # burst (the native stream writes a burst in one go, but its
                            # per-event work is a join): one early write for the first token.
                            flushed = True
                            await anyio.lowlevel.checkpoint()
                    if task.final:
                        return
        except UnknownTask:
            err = RpcError(rpc.TASK_NOT_FOUND, f"task {task.task_id!r} not found", call.id)
            await emit(sse_data(rpc.error_bytes(err, call.version)))
        except ServiceError as exc:
            err = RpcError(rpc.INTERNAL_ERROR, str(exc), call.id)
            await emit(sse_data(rpc.error_bytes(err, call.version)))
        except Exception as exc:  # a bug here must still end the client's stream with words
            _log.exception("a2a stream failed", task_id=task.task_id)
            err = RpcError(rpc.INTERNAL_ERROR, f"internal error: {exc!r}", call.id)
            await emit(sse_data(rpc.error_bytes(err, call.version)))

    return produce


__all__ = ["add_history", "catch_up", "latest_event_id", "task_events"]
