"""The A2A door's I/O shell: Starlette routes over a `TaskService` (cards, JSON-RPC, SSE).

Every answer is HTTP 200 JSON-RPC (errors too). A task's A2A view is folded from the service's
event log (`watch(id, 0)` replays it), so it lives exactly as long as the service keeps the task;
nothing here stores task state of its own (`ListTasks` pages through the service's listing).
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any, Final

import anyio
import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asya_gateway.flows import Flow, Flows
from asya_gateway.service import (
    AlreadyTerminal,
    NotPaused,
    ServiceError,
    StatusUpdate,
    TaskService,
    TaskView,
    UnknownFlow,
    UnknownTask,
)

from ..answers import message_patch
from . import listing, rpc
from .cards import flow_card, gateway_card
from .model import Version, render_task, state_name
from .replay import add_history, catch_up, latest_event_id, task_events
from .rpc import Call, RpcError
from .stream import A2AStream
from .translate import message_payload
from .view import DEFAULT_MAX_BYTES, TaskA2A

_JSON: Final = "application/json"
_log: Final = structlog.get_logger("asya.gateway.a2a")


class DoorConfig(msgspec.Struct, kw_only=True, frozen=True):
    keepalive_seconds: float = 1.0  # < 2 s: the SDK client gives up after 5 s of silence
    send_timeout_seconds: float = 10.0
    max_body_bytes: int = 4 << 20
    max_view_bytes: int = DEFAULT_MAX_BYTES
    blocking_wait_seconds: float = 300.0  # a blocking SendMessage answers by then at the latest
    fold_guard_seconds: float = 5.0  # GetTask never waits longer for the replay than this


def _answer(body: bytes) -> Response:
    return Response(body, media_type=_JSON)


class A2ADoor:
    """Route handlers bound to one service, one flow registry and one public URL."""

    def __init__(
        self,
        service: TaskService,
        flows: Flows,
        public_url: str,
        config: DoorConfig | None = None,
        schemes: list[str] | None = None,
    ) -> None:
        self.schemes = list(schemes or [])  # client credentials the cards declare
        self.service = service
        self.flows = flows
        self.public_url = public_url.rstrip("/")
        self.config = config or DoorConfig()
        # The payload names the mesh task id (`payload.a2a.task.id`), which the service picks.
        # A service whose `create` takes `task_id` gets ours; one with an `on_stored` hook
        # (called between storing the task and enqueueing it) has the id filled in there.
        params = inspect.signature(service.create).parameters
        self._create_takes_id = "task_id" in params
        self._create_has_hook = "on_stored" in params

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/agent-card.json", self.card, methods=["GET"]),
            Route("/.well-known/agent.json", self.card, methods=["GET"]),
            Route("/a2a/{flow}/.well-known/agent-card.json", self.flow_card, methods=["GET"]),
            Route("/a2a", self.rpc, methods=["POST"]),
            Route("/a2a/{flow}", self.rpc, methods=["POST"]),
        ]

    # -- cards ------------------------------------------------------------------------------

    async def card(self, request: Request) -> Response:
        return JSONResponse(gateway_card(self.flows, self.public_url, self.schemes))

    async def flow_card(self, request: Request) -> Response:
        flow = self.flows.get(request.path_params["flow"])
        if flow is None or not flow.a2a:
            return JSONResponse({"error": f"unknown flow {request.path_params['flow']!r}"}, 404)
        return JSONResponse(flow_card(flow, self.public_url, self.schemes))

    # -- JSON-RPC ---------------------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        limit, size, chunks = self.config.max_body_bytes, 0, []
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RpcError(rpc.INVALID_REQUEST, f"invalid request: body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def rpc(self, request: Request) -> Response:
        version: Version = "1.0"
        body = b""
        try:
            body = await self._body(request)
            version = rpc.peek_version(body)
            call = rpc.parse_call(body)
            version = call.version
            path_flow = request.path_params.get("flow")
            if path_flow is not None and self._a2a_flow(path_flow) is None:
                raise RpcError(rpc.INVALID_PARAMS, f"unknown flow {path_flow!r}", call.id)
            return await self._dispatch(call, path_flow)
        except RpcError as exc:
            return _answer(rpc.error_bytes(exc, version))
        except ServiceError as exc:  # a service refusal not mapped above: say what it said
            return _answer(rpc.error_bytes(RpcError(rpc.INTERNAL_ERROR, str(exc)), version))
        except Exception as exc:  # a bug must still be answered in JSON-RPC, and logged
            _log.exception("a2a request failed")
            err = RpcError(rpc.INTERNAL_ERROR, f"internal error: {exc!r}")
            return _answer(rpc.error_bytes(err, version))

    def _a2a_flow(self, name: str) -> Flow | None:
        flow = self.flows.get(name)
        return flow if flow is not None and flow.a2a else None

    async def _dispatch(self, call: Call, path_flow: str | None) -> Response:
        op = call.op
        if op == "push":
            raise RpcError(rpc.PUSH_NOT_SUPPORTED, "push notifications are not supported", call.id)
        if op == "extended_card":
            raise RpcError(
                rpc.EXTENDED_CARD_NOT_CONFIGURED, "no extended agent card is configured", call.id
            )
        if op in ("send", "stream"):
            return await self._send(call, path_flow)
        if op == "get":
            return await self._get(call)
        if op == "cancel":
            return await self._cancel(call)
        if op == "subscribe":
            return await self._subscribe(call)
        return await self._list(call)

    async def _view(self, call: Call, task_id: str) -> TaskView:
        try:
            return await self.service.get(task_id)
        except UnknownTask:
            raise RpcError(rpc.TASK_NOT_FOUND, f"task {task_id!r} not found", call.id) from None

    def _result(self, call: Call, task: TaskA2A) -> bytes:
        snap = task.snapshot()
        limit = rpc.history_length(call)
        if limit is not None:
            snap = msgspec.structs.replace(snap, history=snap.history[-limit:] if limit else [])
        body = render_task(snap, call.version)
        if call.version == "1.0" and call.op in ("send", "stream"):
            body = {"task": body}
        return rpc.result_bytes(call.id, body)

    # -- folding the service's log into the A2A view -----------------------------------------

    async def _fold(self, call: Call, task_id: str) -> TaskA2A:
        view = await self._view(call, task_id)
        task = TaskA2A.for_view(view, max_bytes=self.config.max_view_bytes)
        with anyio.move_on_after(self.config.fold_guard_seconds):
            until = await latest_event_id(self.service, task_id)
            async with self.service.watch(task_id, 0) as updates:
                await catch_up(task, updates, until)
        return task

    # -- operations -------------------------------------------------------------------------

    async def _get(self, call: Call) -> Response:
        task = await self._fold(call, call.params["id"])
        return _answer(self._result(call, task))

    async def _cancel(self, call: Call) -> Response:
        task_id = call.params["id"]
        view = await self._view(call, task_id)
        if view.terminal:
            raise RpcError(
                rpc.TASK_NOT_CANCELABLE, f"task {task_id!r} already ended ({view.status})", call.id
            )
        try:
            view = await self.service.cancel(task_id)
        except AlreadyTerminal as exc:
            raise RpcError(rpc.TASK_NOT_CANCELABLE, str(exc), call.id) from None
        except UnknownTask:
            raise RpcError(rpc.TASK_NOT_FOUND, f"task {task_id!r} not found", call.id) from None
        task = await self._fold(call, task_id)
        task.apply(StatusUpdate(event_id=0, task=view))  # the cancel itself, if not folded
        return _answer(self._result(call, task))

    async def _list(self, call: Call) -> Response:
        try:
            q = listing.query(call.params)
        except ValueError as exc:  # PageTokenError too
            raise RpcError(rpc.INVALID_PARAMS, f"invalid params: {exc}", call.id) from None
        return _answer(rpc.result_bytes(call.id, await listing.list_page(self.service, q)))

    async def _subscribe(self, call: Call) -> Response:
        task_id = call.params["id"]
        view = await self._view(call, task_id)
        if view.terminal:
            task = TaskA2A.for_view(view)
            task.apply(StatusUpdate(event_id=0, task=view))
            state = state_name(task.status.state, call.version)
            raise RpcError(
                rpc.UNSUPPORTED_OPERATION,
                f"task {task_id!r} is in terminal state {state}: nothing more will happen",
                call.id,
            )
        task = TaskA2A.for_view(view, max_bytes=self.config.max_view_bytes)
        return self._stream(call, task, replay=True)

    async def _send(self, call: Call, path_flow: str | None) -> Response:
        message = rpc.call_message(call)
        if "taskId" in message:
            return await self._resume(call, message)
        flow = self._pick_flow(call, path_flow)
        task_id = str(uuid.uuid4())
        context_id = message.get("contextId") or str(uuid.uuid4())
        message = {**message, "contextId": context_id}
        payload = message_payload(message, task_id=task_id, context_id=context_id)
        kwargs: dict[str, Any] = {}
        if self._create_takes_id:
            kwargs["task_id"] = task_id
        elif self._create_has_hook:

            def on_stored(rec: Any) -> None:
                payload["a2a"]["task"]["id"] = rec.id  # before the envelope is built

            kwargs["on_stored"] = on_stored
        try:
            view = await self.service.create(
                route=list(flow.route),
                payload=payload,
                headers={"x-asya-a2a-context-id": context_id},
                deadline_seconds=flow.timeout,
                flow=flow.name,
                **kwargs,
            )
        except UnknownFlow:
            raise RpcError(rpc.INVALID_PARAMS, f"unknown flow {flow.name!r}", call.id) from None
        except ServiceError as exc:
            raise RpcError(rpc.INTERNAL_ERROR, f"flow {flow.name!r}: {exc}", call.id) from None
        message["taskId"] = view.id
        task = TaskA2A(
            view.id,
            context_id,
            [message],
            created_at=view.created_at,
            max_bytes=self.config.max_view_bytes,
        )
        if call.op == "stream":
            return self._stream(call, task, replay=False)
        if rpc.returns_immediately(call):
            return _answer(self._result(call, task))
        with anyio.move_on_after(self.config.blocking_wait_seconds):
            async with self.service.watch(view.id, 0) as updates:
                async for u in updates:
                    task.apply(u)
                    if task.final:
                        break
        return _answer(self._result(call, task))

    def _pick_flow(self, call: Call, path_flow: str | None) -> Flow:
        name = path_flow or rpc.call_skill(call)
        if name is None:
            a2a = self.flows.a2a()
            if len(a2a) == 1:
                return a2a[0]
            names = ", ".join(f.name for f in a2a) or "none configured"
            raise RpcError(
                rpc.INVALID_PARAMS,
                f"name the flow in `params.metadata.skill` (one of: {names})",
                call.id,
            )
        flow = self._a2a_flow(name)
        if flow is None:
            raise RpcError(rpc.INVALID_PARAMS, f"unknown flow {name!r}", call.id)
        return flow

    async def _resume(self, call: Call, message: dict[str, Any]) -> Response:
        task_id = message["taskId"]
        view = await self._view(call, task_id)
        task = TaskA2A.for_view(view, max_bytes=self.config.max_view_bytes)
        if view.status != "paused":
            what = "is in terminal state" if view.terminal else "is not paused: it is"
            raise RpcError(
                rpc.UNSUPPORTED_OPERATION, f"task {task_id!r} {what} {view.status}", call.id
            )
        ctx = message.get("contextId")
        if ctx and ctx != task.context_id:
            raise RpcError(
                rpc.INVALID_PARAMS,
                f"`message.contextId` {ctx!r} is not the context of task {task_id!r}",
                call.id,
            )
        message = {**message, "contextId": task.context_id}
        try:
            resumed = await self.service.resume(
                task_id, patch=message_patch(message), message=message
            )
        except NotPaused as exc:
            raise RpcError(rpc.UNSUPPORTED_OPERATION, str(exc), call.id) from None
        except UnknownTask:
            raise RpcError(rpc.TASK_NOT_FOUND, f"task {task_id!r} not found", call.id) from None
        if call.op == "stream":
            return self._stream(call, task, replay=True, resumed=resumed, message=message)
        task = await self._fold(call, task_id)
        add_history(task, message)
        task.apply(StatusUpdate(event_id=0, task=resumed))
        with anyio.move_on_after(self.config.blocking_wait_seconds):
            if not rpc.returns_immediately(call):
                async with self.service.watch(task_id) as updates:
                    async for u in updates:
                        task.apply(u)
                        if task.final:
                            break
        return _answer(self._result(call, task))

    def _stream(
        self,
        call: Call,
        task: TaskA2A,
        *,
        replay: bool,
        resumed: TaskView | None = None,
        message: dict[str, Any] | None = None,
    ) -> Response:
        """SendStreamingMessage (the Task first, then live) or SubscribeToTask (caught up first)."""
        producer = task_events(
            self.service, call, task, replay=replay, resumed=resumed, message=message
        )
        return A2AStream(  # type: ignore[return-value]  # an ASGI app, as Starlette allows
            producer,
            keepalive=self.config.keepalive_seconds,
            send_timeout=self.config.send_timeout_seconds,
        )


def a2a_routes(
    service: TaskService,
    flows: Flows,
    public_url: str,
    config: DoorConfig | None = None,
    *,
    schemes: list[str] | None = None,
) -> list[Route]:
    """The A2A door's routes, for the gateway app to mount at its root (`schemes`: the client
    credentials its cards declare; the gateway's guard checks them)."""
    return A2ADoor(service, flows, public_url, config, schemes).routes()


__all__ = ["A2ADoor", "DoorConfig", "a2a_routes"]
