"""What clients and handlers write, read leniently into this door's neutral shapes (pure).

A client's A2A message (v1.0 or v0.3 parts) → the payload a flow starts with (front-doors.md
"Message → envelope"); a handler's FLY dict → what it asks the A2A stream to show (typed FLYs in
seed-000 style and upstream helper style, snake_case or camelCase, parts with or without `kind`).
Knows nothing about tasks, streams or HTTP.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ..answers import message_patch

STREAM_ARTIFACT: Final = "stream"
EVENTS_ARTIFACT: Final = "events"
RESULT_ARTIFACT: Final = "result"


def _get(d: dict[str, Any], snake: str, camel: str, default: Any = None) -> Any:
    if snake in d:
        return d[snake]
    return d.get(camel, default)


def norm_part(p: Any) -> dict[str, Any]:
    """Any part shape (v1.0 flat, v0.3 `kind`, a bare string) → a v1.0 part."""
    if isinstance(p, str):
        return {"text": p}
    if not isinstance(p, dict):
        return {"data": p}
    kind = p.get("kind", p.get("type"))
    out: dict[str, Any]
    if isinstance(p.get("text"), str) and kind in (None, "text"):
        out = {"text": p["text"]}
    elif "data" in p and kind in (None, "data"):
        out = {"data": p["data"]}
    elif isinstance(p.get("file"), dict):
        f = p["file"]
        uri, raw = f.get("uri", f.get("url")), f.get("bytes")
        out = {"url": uri} if isinstance(uri, str) else {"raw": raw if isinstance(raw, str) else ""}
        name, mime = f.get("name"), _get(f, "mime_type", "mimeType")
        if isinstance(name, str) and name:
            out["filename"] = name
        if isinstance(mime, str) and mime:
            out["mediaType"] = mime
    elif isinstance(p.get("url"), str) or isinstance(p.get("raw"), str):
        out = {"url": p["url"]} if isinstance(p.get("url"), str) else {"raw": p["raw"]}
        name, mime = p.get("filename"), _get(p, "media_type", "mediaType")
        if isinstance(name, str) and name:
            out["filename"] = name
        if isinstance(mime, str) and mime:
            out["mediaType"] = mime
    else:
        return {"data": p}  # nothing we recognise: keep it whole, as data
    meta = p.get("metadata")
    if isinstance(meta, dict) and meta:
        out["metadata"] = meta
    return out


def norm_parts(parts: Any) -> list[dict[str, Any]]:
    if isinstance(parts, list):
        return [norm_part(p) for p in parts]
    return [] if parts is None else [norm_part(parts)]


def norm_message(m: dict[str, Any], *, default_id: str = "") -> dict[str, Any]:
    """A message of either version → `{messageId, role: user|agent, parts, ...}`."""
    role = str(m.get("role", "user")).lower()
    out: dict[str, Any] = {
        "messageId": str(_get(m, "message_id", "messageId", default_id) or default_id),
        "role": "agent" if role in ("agent", "role_agent") else "user",
        "parts": norm_parts(m.get("parts")),
    }
    for snake, camel in (("task_id", "taskId"), ("context_id", "contextId")):
        v = _get(m, snake, camel)
        if isinstance(v, str) and v:
            out[camel] = v
    meta = m.get("metadata")
    if isinstance(meta, dict) and meta:
        out["metadata"] = meta
    return out


def message_payload(message: dict[str, Any], *, task_id: str, context_id: str) -> dict[str, Any]:
    """The payload a flow starts with, for a normalized client message."""
    payload = message_patch(message)
    payload["a2a"] = {"task": {"id": task_id, "context_id": context_id, "history": [message]}}
    return payload


def a2a_of(payload: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """(`context_id`, `history`) from `payload.a2a.task`, as far as they are there."""
    task = payload.get("a2a", {}).get("task") if isinstance(payload, dict) else None
    if not isinstance(task, dict):
        return None, []
    ctx = task.get("context_id", task.get("contextId"))
    hist = task.get("history")
    msgs = [norm_message(m) for m in hist if isinstance(m, dict)] if isinstance(hist, list) else []
    return (ctx if isinstance(ctx, str) and ctx else None), msgs


# -- FLY ----------------------------------------------------------------------------------------


class ArtifactFly(msgspec.Struct, kw_only=True, frozen=True):
    artifact_id: str
    parts: list[dict[str, Any]]
    name: str = ""
    append: bool | None = None
    last_chunk: bool = False


class MessageFly(msgspec.Struct, kw_only=True, frozen=True):
    """A status message for the stream (state stays WORKING: the mesh owns the lifecycle)."""

    message: dict[str, Any] | None
    metadata: dict[str, Any] | None = None


FlyEffect = ArtifactFly | MessageFly


def _artifact_fly(au: dict[str, Any]) -> ArtifactFly:
    art = au["artifact"] if isinstance(au.get("artifact"), dict) else au
    aid = _get(art, "artifact_id", "artifactId") or _get(au, "artifact_id", "artifactId")
    parts = art.get("parts", au.get("parts"))
    if parts is None and isinstance(art.get("text"), str):
        parts = [{"text": art["text"]}]
    append = au.get("append", art.get("append"))
    last = _get(au, "last_chunk", "lastChunk", _get(art, "last_chunk", "lastChunk", False))
    name = art.get("name")
    return ArtifactFly(
        artifact_id=str(aid) if aid else STREAM_ARTIFACT,
        parts=norm_parts(parts),
        name=name if isinstance(name, str) else "",
        append=append if isinstance(append, bool) else None,
        last_chunk=last is True,
    )


def _message_fly(su: dict[str, Any]) -> MessageFly:
    st = su["status"] if isinstance(su.get("status"), dict) else su
    m = st.get("message", su.get("message"))
    if isinstance(m, str):
        m = {"parts": [{"text": m}]}
    msg = norm_message({**m, "role": m.get("role", "agent")}) if isinstance(m, dict) else None
    meta = su.get("metadata")
    return MessageFly(message=msg, metadata=meta if isinstance(meta, dict) and meta else None)


def read_fly(data: dict[str, Any]) -> FlyEffect:
    """What one FLY asks the A2A stream to show (front-doors.md's mapping table)."""
    au = _get(data, "artifact_update", "artifactUpdate")
    if isinstance(au, dict):
        return _artifact_fly(au)
    su = _get(data, "status_update", "statusUpdate")
    if isinstance(su, dict):
        return _message_fly(su)
    m = data.get("message")
    if isinstance(m, dict) and "parts" in m:
        return _message_fly({"message": m})
    text = data.get("text")
    if isinstance(text, str):
        return ArtifactFly(artifact_id=STREAM_ARTIFACT, parts=[{"text": text}])
    return ArtifactFly(artifact_id=EVENTS_ARTIFACT, parts=[{"data": data}])


__all__ = [
    "EVENTS_ARTIFACT",
    "RESULT_ARTIFACT",
    "STREAM_ARTIFACT",
    "ArtifactFly",
    "FlyEffect",
    "MessageFly",
    "a2a_of",
    "message_payload",
    "norm_message",
    "norm_part",
    "norm_parts",
    "read_fly",
]
