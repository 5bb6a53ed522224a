"""The REST door's handlers (gateway.md "Endpoints"): `Gateway`, thin Starlette routes over
`TaskEngine`, the bodies they take (`CreateTask`, `Resume`) and how errors become answers.

Routes parse and answer; tasks live in `engine.py` (store + live fan-out), sidecar bodies are
parsed in `ingest.py` (the event stream's in `eventstream.py`), client streams are
`sse.SseResponse`. `app.py` assembles them into the ASGI app.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from asya_mesh.events import Event
from asya_mesh.names import ACTOR_NAME_PATTERN

from .answers import message_patch
from .config import GatewayConfig
from .engine import TaskEngine
from .eventstream import apply_batch, serve_stream
from .ingest import (
    BadEvent,
    parse_events,
    parse_legacy_final,
    parse_legacy_fly,
    parse_legacy_progress,
)
from .service import (
    AlreadyTerminal,
    NotPaused,
    ServiceError,
    Unavailable,
    UnknownActor,
    UnknownFlow,
    UnknownTask,
)
from .sse import SseResponse
from .state import view_json
from .subscribers import Subscriber

_RESERVED: Final = frozenset({"x-sink", "x-sump"})
_INDEX_HTML: Final = resources.files("asya_gateway").joinpath("static/index.html")


class CreateTask(msgspec.Struct, kw_only=True, frozen=True):
    """Body of `POST /api/v1/mesh`: a `route` (or `?actor=`) or a `flow`."""

    route: list[str] | str | None = None  # a list, or "a,b,c"
    flow: str | None = None
    payload: Any = None
    headers: dict[str, Any] = {}
    timeout: float | None = None  # seconds; stamps status.deadline_at


class Resume(msgspec.Struct, kw_only=True, frozen=True):
    """Body of `POST /api/v1/mesh/{id}/resume`."""

    payload: dict[str, Any] | None = None
    message: dict[str, Any] | None = None


_create_decoder: Final = msgspec.json.Decoder(CreateTask)
_resume_decoder: Final = msgspec.json.Decoder(Resume)
_STATUS_OF: Final[dict[type[ServiceError], int]] = {
    UnknownTask: 404,
    UnknownFlow: 400,
    UnknownActor: 400,
    NotPaused: 409,
    AlreadyTerminal: 409,
    Unavailable: 503,
}


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Gateway:
    """Route handlers bound to one config and one engine."""

    def __init__(self, config: GatewayConfig, engine: TaskEngine) -> None:
        self.config = config
        self.engine = engine
        self.registry = engine.registry

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _response(self, sub: Subscriber, task_id: str) -> Response:
        if sub.finished and not sub.queue:
            self.registry.unsubscribe(sub)
            return Response(status_code=204)  # resumed past the end: tells EventSource to stop
        return SseResponse(  # type: ignore[return-value]  # an ASGI app, as Starlette allows
            sub,
            keepalive=self.config.keepalive_seconds,
            send_timeout=self.config.send_timeout_seconds,
            on_close=lambda: self.registry.unsubscribe(sub),
            headers=[(b"x-asya-task-id", task_id.encode())],
        )

    @staticmethod
    def _route(req: CreateTask, request: Request) -> list[str]:
        raw = req.route if req.route is not None else request.query_params.get("actor")
        route = [a.strip() for a in raw.split(",")] if isinstance(raw, str) else list(raw or [])
        if not route and req.flow is None:
            raise HTTPError(400, "`route` is required: a list of actor names (or ?actor=, flow)")
        for actor in route:
            if not ACTOR_NAME_PATTERN.match(actor):
                raise HTTPError(400, f"invalid actor name {actor!r} in `route`")
            if actor in _RESERVED:
                raise HTTPError(400, f"`route` must not contain the end actor {actor!r}")
        return route

    # -- endpoints --------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return Response("OK", media_type="text/plain")

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.registry.stats())

    async def index(self, request: Request) -> Response:
        return Response(_INDEX_HTML.read_bytes(), media_type="text/html; charset=utf-8")

    async def flows(self, request: Request) -> Response:
        return JSONResponse({"flows": [msgspec.to_builtins(f) for f in self.engine.flows]})

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        try:
            req = _create_decoder.decode(body or b"{}")
        except RecursionError:
            raise HTTPError(400, "JSON nested too deeply") from None
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise HTTPError(400, f"invalid task: {exc}") from None
        if req.timeout is not None and req.timeout <= 0:
            raise HTTPError(400, "`timeout` must be a positive number of seconds")
        route = self._route(req, request)
        subs: list[Subscriber] = []
        wants_stream = "text/event-stream" in request.headers.get("accept", "")

        def subscribe(rec: Any) -> None:
            # Subscribed before the envelope is enqueued: no event of this task can be missed.
            subs.append(self.registry.subscribe(rec))

        try:
            task = await self.engine.create(
                route=route,
                payload=req.payload,
                headers=req.headers,
                deadline_seconds=req.timeout,
                flow=req.flow,
                on_stored=subscribe if wants_stream else None,
            )
        except UnknownActor:
            for sub in subs:  # refused: no stream, a 400 naming the actor and its queue
                self.registry.unsubscribe(sub)
            raise
        except Unavailable as exc:
            if not subs:
                raise HTTPError(503, str(exc)) from None
            task = None  # the stream carries the failure
        if subs:
            return self._response(subs[0], subs[0].task_id)
        assert task is not None
        return JSONResponse(
            {"id": task.id, "status": "pending", "stream": f"/stream/{task.id}"},
            status_code=201,
        )

    async def get(self, request: Request) -> Response:
        return JSONResponse(view_json(await self.engine.record(request.path_params["id"])))

    async def cancel(self, request: Request) -> Response:
        with contextlib.suppress(AlreadyTerminal):  # DELETE of a finished task is still 204
            await self.engine.cancel(request.path_params["id"])
        return Response(status_code=204)

    async def resume(self, request: Request) -> Response:
        try:
            req = _resume_decoder.decode(await self._body(request) or b"{}")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise HTTPError(400, f"invalid resume: {exc}") from None
        if req.payload is None and req.message is None:
            raise HTTPError(400, "resume needs `payload` (an object) or `message` (A2A)")
        patch = dict(req.payload or {})
        if req.message is not None:
            patch.update(message_patch(req.message))
        task = await self.engine.resume(request.path_params["id"], patch=patch, message=req.message)
        return JSONResponse({"id": task.id, "status": task.status}, status_code=202)

    async def events_many(self, request: Request) -> Response:
        """`POST /api/v1/mesh/events`: many tasks' events in one body (each carries its `id`),
        applied in order per task; 204, or 200 listing the ids this gateway does not know."""
        status, answer = await apply_batch(self.engine, await self._body(request))
        return JSONResponse(answer, status_code=status) if answer else Response(status_code=status)

    async def event_stream(self, websocket: WebSocket) -> None:
        """The same, as a WebSocket: one batch per message, each answered (`eventstream.py`)."""
        await serve_stream(websocket, self.engine, self.config.max_body_bytes)

    async def _ingest(self, request: Request, parse: Callable[[bytes], list[Event]]) -> str:
        """Parse the body with `parse` (a bad one is a 400 naming the problem) and ingest its
        events for the path's task; returns the task id."""
        try:
            events = parse(await self._body(request))
        except BadEvent as exc:
            raise HTTPError(400, str(exc)) from None
        task_id: str = request.path_params["id"]
        await self.engine.ingest(task_id, events)
        return task_id

    async def events(self, request: Request) -> Response:
        await self._ingest(request, parse_events)
        return Response(status_code=204)

    async def legacy_fly(self, request: Request) -> Response:
        await self._ingest(request, lambda body: [parse_legacy_fly(body)])
        return Response(status_code=200)

    async def legacy_progress(self, request: Request) -> Response:
        # Upstream's legacy gateway says 200 for an unknown id; we say 404, or a sidecar
        # falling back from a 404 on /events would conclude this gateway is legacy-only.
        task_id = await self._ingest(request, lambda body: [parse_legacy_progress(body)])
        rec = await self.engine.record(task_id)
        return JSONResponse({"status": "ok", "progress_percent": round(rec.progress * 100, 2)})

    async def legacy_final(self, request: Request) -> Response:
        await self._ingest(request, lambda body: [parse_legacy_final(body)])
        return JSONResponse({"status": "ok"})

    async def stream(self, request: Request) -> Response:
        # The header (EventSource's reconnects) wins over `?last_event_id=` (which lets a
        # fresh EventSource, unable to set headers, start from the task's first event).
        raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        raw = (raw or "").strip()
        last = int(raw) if raw.isdigit() else None
        task_id = request.path_params["id"]
        return self._response(await self.engine.subscribe(task_id, last), task_id)

    async def feed(self, request: Request) -> Response:
        sub = self.engine.feed.subscribe()
        return SseResponse(  # type: ignore[return-value]
            sub,
            keepalive=self.config.keepalive_seconds,
            send_timeout=self.config.send_timeout_seconds,
            on_close=lambda: self.engine.feed.unsubscribe(sub),
        )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def service_error(request: Request, exc: Exception) -> Response:
    status = next((s for t, s in _STATUS_OF.items() if isinstance(exc, t)), 500)
    return JSONResponse({"error": str(exc)}, status_code=status)


__all__ = ["CreateTask", "Gateway", "HTTPError", "Resume", "http_error", "service_error"]
