"""A `TaskService` over the gateway's own REST + SSE API (POST/GET/DELETE /api/v1/mesh, GET
/stream/{id}): lets the end-to-end tests put the MCP door in front of a real `asya dev` mesh
before the door is mounted inside the gateway. Not a mock: every call crosses real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

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


def _view(data: dict[str, Any]) -> TaskView:
    return msgspec.convert(data, TaskView, strict=False)


class RestTaskService:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=None))
        self.created: list[TaskView] = []

    async def aclose(self) -> None:
        await self.client.aclose()

    async def create(
        self,
        *,
        route: list[str],
        payload: Any,
        headers: dict[str, Any] | None = None,
        deadline_seconds: float | None = None,
        flow: str | None = None,
    ) -> TaskView:
        body = {"route": route, "payload": payload, "headers": headers or {}}
        if deadline_seconds is not None:
            body["timeout"] = deadline_seconds
        r = await self.client.post("/api/v1/mesh", json=body)
        if r.status_code != 201:
            raise UnknownActor(r.text)
        view = _view(r.json())
        self.created.append(view)
        return view

    async def get(self, task_id: str) -> TaskView:
        r = await self.client.get(f"/api/v1/mesh/{task_id}")
        if r.status_code == 404:
            raise UnknownTask(task_id)
        return _view(r.json())

    async def recent(self, limit: int, before: Cursor | None = None) -> list[Listed]:
        """The tasks this bridge created, newest first (the REST API has no listing), each
        read fresh over HTTP."""
        cursors = sorted(((float(i), v.id) for i, v in enumerate(self.created)), reverse=True)
        after = [c for c in cursors if before is None or c < before][: max(0, limit)]
        return [Listed(task=await self.get(c[1]), cursor=c) for c in after]

    async def cancel(self, task_id: str) -> TaskView:
        before = await self.get(task_id)
        if before.terminal and before.status != "canceled":
            raise AlreadyTerminal(task_id)
        await self.client.delete(f"/api/v1/mesh/{task_id}")
        return await self.get(task_id)

    async def resume(
        self, task_id: str, *, patch: dict[str, Any], message: dict[str, Any] | None = None
    ) -> TaskView:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def watch(
        self, task_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[AsyncIterator[TaskUpdate]]:
        # From the first event: FLYs sent between create and this call are not lost.
        params = {"last_event_id": str(last_event_id or 0)}
        async with self.client.stream("GET", f"/stream/{task_id}", params=params) as resp:
            if resp.status_code == 404:
                raise UnknownTask(task_id)
            yield self._updates(resp)

    @staticmethod
    async def _updates(resp: httpx.Response) -> AsyncIterator[TaskUpdate]:
        name, data, eid = "message", [], 0
        async for line in resp.aiter_lines():
            if line == "":
                if data:
                    obj = msgspec.json.decode("\n".join(data))
                    if name == "update":
                        view = _view(obj)
                        yield StatusUpdate(event_id=eid, task=view)
                        if view.terminal:
                            return
                    else:
                        yield FlyUpdate(event_id=eid, data=obj)
                name, data = "message", []
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
                elif key == "id" and value.isdigit():
                    eid = int(value)
