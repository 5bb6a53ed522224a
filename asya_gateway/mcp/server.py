"""The MCP door's shell: the official `mcp` SDK's low-level `Server` behind its Streamable HTTP
session manager, with `tools/list` and `tools/call` answered from the flows and a `TaskService`.

The SDK owns the wire (every revision its client negotiates: the stateless 2026-07-28 POSTs and
the 2025-03-26..2025-11-25 handshake sessions, `notifications/cancelled`, a closed response stream
cancelling the handler, binding a session to the user that opened it). This module only hands
it the guard's principal, turns the pure core's values into SDK models and follows one task per
call. It depends on `service.TaskService`, never on the gateway's internals.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import anyio
import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from asya_gateway.auth import OPEN, Principal, current_principal
from asya_gateway.flows import Flow, Flows
from asya_gateway.service import (
    AlreadyTerminal,
    FlyUpdate,
    ServiceError,
    StatusUpdate,
    TaskService,
    TaskView,
    UnknownTask,
)

from .core import (
    TASK_ID_META,
    ArgumentsRefused,
    CallState,
    Outcome,
    ToolCatalog,
    outcome,
    timed_out,
)

log = logging.getLogger("asya_gateway.mcp")

#: Bound on the shielded `service.cancel` a cancelled call makes on its way out.
CANCEL_GRACE: Final = 5.0


def _result(
    text: str, *, is_error: bool, structured: Any = None, task_id: str | None = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=is_error,
        _meta={TASK_ID_META: task_id} if task_id is not None else None,
    )


def _progress_token(params: Any) -> str | int | None:
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


class _Tools:
    """The two handlers, bound to one catalog and one task service."""

    def __init__(self, service: TaskService, catalog: ToolCatalog) -> None:
        self.service = service
        self.catalog = catalog
        # Set when the gateway stops: calls torn down then leave their tasks running (the
        # client was not the one who gave up; the task stays readable by its id).
        self.stopping = False

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.input_schema)
                for t in self.catalog.tools()
            ]
        )

    def input_schema(self, name: str) -> dict[str, Any] | None:
        flow = self.catalog.lookup(name)
        return flow.input_schema if flow is not None else None

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # The SDK runs this in its own task, outside the HTTP request's context: the caller
        # the gateway's guard authenticated comes with the request's scope.
        scope = getattr(ctx.request, "scope", None)
        principal = scope.get("asya.principal", OPEN) if isinstance(scope, dict) else OPEN
        token = current_principal.set(principal if isinstance(principal, Principal) else OPEN)
        try:
            return await self._call_tool(ctx, params)
        finally:
            current_principal.reset(token)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        flow = self.catalog.lookup(params.name)
        if flow is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        try:
            payload = self.catalog.check(flow.name, params.arguments)
        except ArgumentsRefused as exc:
            # As the SDK's own MCPServer does: a tool-level error the model can correct.
            return _result(f"tool {flow.name!r} refused its arguments: {exc}", is_error=True)
        try:
            # Shielded: a call cancelled while its task is being created still learns the id,
            # so the cancellation below reaches the task instead of orphaning it.
            with anyio.CancelScope(shield=True):
                view = await self.service.create(
                    route=list(flow.route),
                    payload=payload,
                    deadline_seconds=flow.timeout,
                    flow=flow.name,
                )
        except ServiceError as exc:
            return _result(f"tool {flow.name!r}: {exc}", is_error=True)
        token = _progress_token(ctx.params)
        state = CallState(view.id)
        try:
            done = await self._run(ctx, flow, state, token)
        except ServiceError as exc:  # e.g. the task was evicted while the call followed it
            done = Outcome(f"task {view.id}: {exc}", None, True)
        except anyio.get_cancelled_exc_class():
            # The client cancelled (notifications/cancelled, or closed the response stream):
            # the task goes with it. Shielded and bounded, then the cancellation goes on.
            if not self.stopping:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_GRACE):
                    await self._cancel(view.id)
            raise
        return _result(
            done.text, is_error=done.is_error, structured=done.structured, task_id=view.id
        )

    async def _run(
        self, ctx: ServerRequestContext[Any], flow: Flow, state: CallState, token: str | int | None
    ) -> Outcome:
        with anyio.move_on_after(flow.timeout) as guard:
            view = await self._follow(ctx, state, token)
        if not guard.cancelled_caught:
            return outcome(flow, view, state)
        # Past the flow's timeout: the task may have just ended; if not, it is canceled.
        view = await self.service.get(state.task_id)
        if view.terminal:
            return outcome(flow, view, state)
        await self._cancel(state.task_id)
        return timed_out(flow, state.task_id)

    async def _follow(
        self, ctx: ServerRequestContext[Any], state: CallState, token: str | int | None
    ) -> TaskView:
        """Send each FLY as a progress notification as it arrives; the task once it ends."""
        meta = {TASK_ID_META: state.task_id}
        async with self.service.watch(state.task_id) as updates:
            async for update in updates:
                if isinstance(update, FlyUpdate):
                    step = state.on_fly(update.data)
                    if token is None:
                        continue
                    await ctx.session.send_notification(
                        types.ProgressNotification(
                            params=types.ProgressNotificationParams(
                                progress_token=token,
                                progress=step.progress,
                                message=step.message,
                                _meta=meta,
                            )
                        ),
                        related_request_id=ctx.request_id,
                    )
                elif isinstance(update, StatusUpdate) and (
                    update.task.terminal or update.task.status == "paused"
                ):
                    return update.task
        # The watch ended without a terminal update (the gateway is shutting down).
        return await self.service.get(state.task_id)

    async def _cancel(self, task_id: str) -> None:
        try:
            await self.service.cancel(task_id)
        except (AlreadyTerminal, UnknownTask):
            pass
        except ServiceError as exc:
            log.warning("mcp: could not cancel task %s: %s", task_id, exc)


def _as_sdk_user(scope: Scope) -> Scope:
    """The request as the SDK's session manager should see it: the guard's principal as the
    SDK's `AuthenticatedUser`, by its owner name (`key:NAME` / `jwt:SUB`, never the secret).

    The manager binds a handshake session to the user of the request that opened it and
    answers any request for that session from another user (POST, GET stream, DELETE) exactly
    as for an unknown session: 404 with a JSON-RPC error, "Session not found". Its owner map is
    emptied as it forgets each session (DELETE, idle timeout, crash, shutdown) and is bounded by
    its session limit. With access control off there is no user, and nothing changes."""
    principal = scope.get("asya.principal")
    owner = principal.owner if isinstance(principal, Principal) else None
    if owner is None:
        return scope
    token = AccessToken(token="", client_id=owner, scopes=[])  # the owner is the identity
    return {**scope, "user": AuthenticatedUser(token)}


class _Endpoint:
    # A class instance, so Starlette's Route treats it as a raw ASGI app (not a request handler).
    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(_as_sdk_user(scope), receive, send)


@dataclass(frozen=True, slots=True)
class McpDoor:
    """What the gateway mounts: the `/mcp` route and the lifespan that runs the SDK's manager."""

    server: Server[Any]
    manager: StreamableHTTPSessionManager
    _tools: _Tools

    def routes(self, path: str = "/mcp") -> list[Route]:
        # POST carries every request; GET (standalone stream) and DELETE (end of session) are
        # the handshake revisions' session verbs.
        return [Route(path, _Endpoint(self.manager), methods=["GET", "POST", "DELETE"])]

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Owns the session manager's task group; enter it once, in the app's lifespan."""
        async with self.manager.run():
            try:
                yield
            finally:
                self.stop()

    def stop(self) -> None:
        """The gateway is stopping: calls ended from now on do not cancel their tasks. Called
        on leaving `lifespan()`; call it earlier (at the shutdown signal) to cover calls that
        the server tears down before the lifespan ends."""
        self._tools.stopping = True

    def starlette(self) -> Starlette:
        """The door alone as an app (`/mcp` only): for tests and for serving it by itself."""
        return Starlette(routes=self.routes(), lifespan=lambda _app: self.lifespan())


def _package_version() -> str:
    try:
        return importlib.metadata.version("asya-mesh")
    except importlib.metadata.PackageNotFoundError:
        return ""


def mcp_app(
    service: TaskService,
    flows: Flows,
    *,
    name: str = "asya-gateway",
    version: str | None = None,
    security: TransportSecuritySettings | None = None,
) -> McpDoor:
    """The MCP door for `flows` over `service`; raises ToolSchemaError for a bad input_schema."""
    tools = _Tools(service, ToolCatalog.build(flows))
    server: Server[Any] = Server(
        name,
        version=_package_version() if version is None else version,
        instructions="Each tool runs one flow of the Asya mesh; its FLYs arrive as progress.",
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
        get_tool_input_schema=tools.input_schema,
    )
    manager = StreamableHTTPSessionManager(app=server, security_settings=security)
    return McpDoor(server=server, manager=manager, _tools=tools)


__all__ = ["CANCEL_GRACE", "McpDoor", "mcp_app"]
