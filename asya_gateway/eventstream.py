"""The sidecars' event stream: `/api/v1/mesh/events` as a WebSocket, one POST body per message.

Each message is what `POST /api/v1/mesh/events` takes (a JSON array of events, each carrying
its task's `id`). Messages are applied one after another, in order, and each is answered with
`{"status": N}`: N is the status the POST would have answered (204; 200 with `unknown`; 400 or
413 with `error`; 503), so a sidecar handles both alike. A stream is this project's addition
(sidecar-gateway.md knows the POST): a message costs the gateway about two thirds of a POST's
CPU and the sidecar a third (`bench/http_clients_bench.py`); a busy sidecar sends hundreds a
second. The guard (`guard.py`) lets the upgrade through on the POST's terms: the mesh token,
the mesh listener.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from asya_mesh.events import Event

from .engine import TaskEngine
from .ingest import BadEvent, parse_task_events
from .service import ServiceError, Unavailable

_encoder: Final = msgspec.json.Encoder()

PATH: Final = "/api/v1/mesh/events"


async def apply_batch(engine: TaskEngine, body: bytes) -> tuple[int, dict[str, Any] | None]:
    """Apply a many-task batch; (status, JSON answer or None) as `POST /api/v1/mesh/events`
    answers it. Each task's events are applied in order; statuses are stored on return."""
    try:
        runs = parse_task_events(body)
    except BadEvent as exc:
        return 400, {"error": str(exc)}
    per_task: dict[str, list[Event]] = {}
    for task_id, events in runs:  # a task may come back later in the body: join its runs
        per_task.setdefault(task_id, []).extend(events)
    # Per round (`rounds.py`) one store call for all tasks' statuses, one publish for FLYs.
    unknown = await engine.ingest_many(per_task)
    return (200, {"unknown": unknown}) if unknown else (204, None)


async def serve_stream(websocket: WebSocket, engine: TaskEngine, max_bytes: int) -> None:
    """Answer each message of one sidecar's stream, in order, until it disconnects."""
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            body = msg.get("bytes")
            if body is None:
                body = (msg.get("text") or "").encode()
            answer: dict[str, Any]
            if len(body) > max_bytes:
                answer = {"status": 413, "error": f"message over {max_bytes} bytes"}
            else:
                try:
                    status, extra = await apply_batch(engine, body)
                except ServiceError as exc:  # the store is down: the sidecar retries by POST
                    status, extra = (
                        (503 if isinstance(exc, Unavailable) else 500),
                        {"error": str(exc)},
                    )
                answer = {"status": status, **(extra or {})}
            await websocket.send_bytes(_encoder.encode(answer))
    except WebSocketDisconnect:
        return


__all__ = ["PATH", "apply_batch", "serve_stream"]
