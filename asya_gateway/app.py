"""The gateway's HTTP surface (gateway.md): thin Starlette routes over `TaskRegistry`.

Routes parse and answer; task state lives in `tasks.py`, event parsing in `events.py`, the
client stream in `sse.py`. Queues are reached through an injected `Enqueue` callable.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, Final

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asya_mesh.names import ACTOR_NAME_PATTERN
from asya_mesh.transports import open_transport, queue_name

from .config import GatewayConfig
from .events import (
    BadEvent,
    parse_events,
    parse_legacy_final,
    parse_legacy_fly,
    parse_legacy_progress,
)
from .sse import EventStream
from .tasks import TaskRegistry, TooManyTasks, UnknownTask, rfc3339

#: Sends one envelope body to a queue, durably (the transport's `send`).
Enqueue = Callable[[str, bytes], Awaitable[None]]

_RESERVED: Final = frozenset({"x-sink", "x-sump"})
_INDEX_HTML: Final = resources.files("asya_gateway").joinpath("static/index.html")


class CreateTask(msgspec.Struct, kw_only=True, frozen=True):
    """Body of `POST /api/v1/mesh`."""

    route: list[str] | str | None = None  # a list, or "a,b,c"; `?actor=` also works
    payload: Any = None
    headers: dict[str, Any] = {}
    timeout: float | None = None  # seconds; stamps status.deadline_at


_create_decoder: Final = msgspec.json.Decoder(CreateTask)
_encoder: Final = msgspec.json.Encoder()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Gateway:
    """Route handlers bound to one registry, one config and one way to enqueue."""

    def __init__(self, config: GatewayConfig, registry: TaskRegistry, enqueue: Enqueue) -> None:
        self.config = config
        self.registry = registry
        self.enqueue = enqueue

    # -- helpers ----------------------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _HTTPError(413, f"request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _HTTPError(413, f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _stream(self, task_id: str, last_event_id: int | None) -> Response:
        sub = self.registry.subscribe(task_id, last_event_id)
        if sub.finished and not sub.queue:
            return Response(status_code=204)  # resumed past the end: tells EventSource to stop
        return EventStream(  # type: ignore[return-value]  # an ASGI app, as Starlette allows
            sub,
            keepalive=self.config.keepalive_seconds,
            send_timeout=self.config.send_timeout_seconds,
            on_close=self.registry.unsubscribe,
            headers=[(b"x-asya-task-id", task_id.encode())],
        )

    def _envelope(self, task_id: str, req: CreateTask, route: list[str]) -> bytes:
        task = self.registry.get(task_id)
        assert task is not None
        created = rfc3339(task.created_at)
        status: dict[str, Any] = {
            "phase": "pending",
            "actor": route[0],
            "attempt": 1,
            "created_at": created,
            "updated_at": created,
        }
        if req.timeout is not None:
            status["deadline_at"] = rfc3339(task.created_at + req.timeout)
        headers = {**req.headers, "x-asya-gateway-url": self.config.base_url}
        return _encoder.encode(
            {
                "id": task_id,
                "route": {"prev": [], "curr": route[0], "next": route[1:]},
                "headers": headers,
                "status": status,
                "payload": req.payload,
            }
        )

    @staticmethod
    def _route(req: CreateTask, request: Request) -> list[str]:
        raw = req.route if req.route is not None else request.query_params.get("actor")
        route = [a.strip() for a in raw.split(",")] if isinstance(raw, str) else list(raw or [])
        if not route:
            raise _HTTPError(400, "`route` is required: a list of actor names (or ?actor=)")
        for actor in route:
            if not ACTOR_NAME_PATTERN.match(actor):
                raise _HTTPError(400, f"invalid actor name {actor!r} in `route`")
            if actor in _RESERVED:
                raise _HTTPError(400, f"`route` must not contain the end actor {actor!r}")
        return route

    # -- endpoints --------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return Response("OK", media_type="text/plain")

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.registry.stats())

    async def index(self, request: Request) -> Response:
        return Response(_INDEX_HTML.read_bytes(), media_type="text/html; charset=utf-8")

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        try:
            req = _create_decoder.decode(body or b"{}")
        except RecursionError:
            raise _HTTPError(400, "JSON nested too deeply") from None
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _HTTPError(400, f"invalid task: {exc}") from None
        if req.timeout is not None and req.timeout <= 0:
            raise _HTTPError(400, "`timeout` must be a positive number of seconds")
        route = self._route(req, request)
        try:
            task = self.registry.create(route)
        except TooManyTasks as exc:
            raise _HTTPError(503, str(exc)) from None
        envelope = self._envelope(task.id, req, route)
        wants_stream = "text/event-stream" in request.headers.get("accept", "")
        # Subscribed before the envelope is enqueued: no event of this task can be missed.
        response = self._stream(task.id, None) if wants_stream else None
        try:
            await self.enqueue(queue_name(self.config.transport.namespace, route[0]), envelope)
        except Exception as exc:  # any transport failure becomes the task's failure
            self.registry.fail(task.id, f"could not enqueue the envelope: {exc}")
            if response is None:
                raise _HTTPError(503, f"could not enqueue the envelope: {exc}") from None
        if response is not None:
            return response
        return JSONResponse(
            {"id": task.id, "status": "pending", "stream": f"/stream/{task.id}"},
            status_code=201,
        )

    async def get(self, request: Request) -> Response:
        task = self.registry.get(request.path_params["id"])
        if task is None:
            raise _HTTPError(404, f"unknown task {request.path_params['id']!r}")
        return JSONResponse(task.view())

    async def cancel(self, request: Request) -> Response:
        try:
            self.registry.cancel(request.path_params["id"])
        except UnknownTask:
            raise _HTTPError(404, f"unknown task {request.path_params['id']!r}") from None
        return Response(status_code=204)

    async def events(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        try:
            for event in parse_events(await self._body(request)):
                self.registry.apply(task_id, event)
        except BadEvent as exc:
            raise _HTTPError(400, str(exc)) from None
        except UnknownTask:
            raise _HTTPError(404, f"unknown task {task_id!r}") from None
        return Response(status_code=204)

    async def legacy_fly(self, request: Request) -> Response:
        try:
            self.registry.apply(
                request.path_params["id"], parse_legacy_fly(await self._body(request))
            )
        except BadEvent as exc:
            raise _HTTPError(400, str(exc)) from None
        return Response(status_code=200)

    async def legacy_progress(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        try:
            self.registry.apply(task_id, parse_legacy_progress(await self._body(request)))
        except BadEvent as exc:
            raise _HTTPError(400, str(exc)) from None
        except UnknownTask:
            # Upstream's legacy gateway says 200 here; we say 404, or a sidecar falling back
            # from a 404 on /events would conclude this gateway is legacy-only and stay so.
            raise _HTTPError(404, f"unknown task {task_id!r}") from None
        task = self.registry.get(task_id)
        percent = round(task.progress * 100, 2) if task else 0.0
        return JSONResponse({"status": "ok", "progress_percent": percent})

    async def legacy_final(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        try:
            self.registry.apply(task_id, parse_legacy_final(await self._body(request)))
        except BadEvent as exc:
            raise _HTTPError(400, str(exc)) from None
        except UnknownTask:
            raise _HTTPError(404, f"unknown task {task_id!r}") from None  # as legacy_progress
        return JSONResponse({"status": "ok"})

    async def stream(self, request: Request) -> Response:
        # The header (EventSource's reconnects) wins over `?last_event_id=` (which lets a
        # fresh EventSource, unable to set headers, start from the task's first event).
        raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        raw = (raw or "").strip()
        last = int(raw) if raw.isdigit() else None
        try:
            return self._stream(request.path_params["id"], last)
        except UnknownTask:
            raise _HTTPError(404, f"unknown task {request.path_params['id']!r}") from None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _HTTPError)
    return _error(exc.status, exc.message)


def create_app(
    config: GatewayConfig,
    *,
    registry: TaskRegistry | None = None,
    enqueue: Enqueue | None = None,
) -> Starlette:
    """The gateway ASGI app; without `enqueue` it opens `config.transport` for its lifetime."""
    registry = registry or TaskRegistry(
        ring_size=config.ring_size,
        ring_max_bytes=config.ring_max_bytes,
        subscriber_buffer=config.subscriber_buffer,
        max_tasks=config.max_tasks,
        terminal_linger=config.terminal_linger_seconds,
    )

    async def not_ready(queue: str, body: bytes) -> None:
        raise RuntimeError("transport not open")

    gw = Gateway(config, registry, enqueue or not_ready)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(registry.run_finalizer)
            try:
                if enqueue is not None:
                    yield
                else:
                    transport = await open_transport(config.transport)
                    gw.enqueue = transport.send
                    try:
                        yield
                    finally:
                        await transport.aclose()
            finally:
                registry.close_all()
                tg.cancel_scope.cancel()

    routes = [
        Route("/", gw.index, methods=["GET"]),
        Route("/health", gw.health, methods=["GET"]),
        Route("/api/v1/stats", gw.stats, methods=["GET"]),
        Route("/api/v1/mesh", gw.create, methods=["POST"]),
        Route("/api/v1/mesh/", gw.create, methods=["POST"]),
        Route("/api/v1/mesh/{id}", gw.get, methods=["GET"]),
        Route("/api/v1/mesh/{id}", gw.cancel, methods=["DELETE"]),
        Route("/api/v1/mesh/{id}/events", gw.events, methods=["POST"]),
        Route("/api/v1/mesh/{id}/events", gw.stream, methods=["GET"]),  # mesh-api's SSE path
        Route("/mesh/{id}/fly", gw.legacy_fly, methods=["POST"]),
        Route("/mesh/{id}/progress", gw.legacy_progress, methods=["POST"]),
        Route("/mesh/{id}/final", gw.legacy_final, methods=["POST"]),
        Route("/stream/{id}", gw.stream, methods=["GET"]),
        Route("/mesh/{id}/stream", gw.stream, methods=["GET"]),  # legacy gateway's SSE path
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={_HTTPError: _http_error},
    )
    app.state.registry = registry
    app.state.gateway = gw
    return app


__all__ = ["CreateTask", "Enqueue", "Gateway", "create_app"]
