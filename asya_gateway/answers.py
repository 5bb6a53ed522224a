"""How an answer merges into a paused task's payload: an A2A message as a payload patch, and
the patch (plus the message, into the A2A history) merged into the stored payload."""

from __future__ import annotations

from typing import Any


def message_patch(message: dict[str, Any]) -> dict[str, Any]:
    """The payload keys a message contributes: texts joined → `query`, data objects merged.

    A single data part and no text is the payload itself (an object; anything else lands
    under `data`); data that is not an object, beside text, lands under `data` too.
    """
    # Tolerant: a door validated its messages already; a REST resume's is taken as it comes
    # (parts that are not objects, or texts that are not strings, contribute nothing).
    given = message.get("parts")
    parts = [p for p in given if isinstance(p, dict)] if isinstance(given, list) else []
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str)]
    datas = [p["data"] for p in parts if "data" in p]
    out: dict[str, Any] = {}
    loose: list[Any] = []
    for d in datas:
        if isinstance(d, dict):
            out.update(d)
        else:
            loose.append(d)
    if loose:
        out["data"] = loose[0] if len(loose) == 1 and not texts and len(datas) == 1 else loose
    if texts:
        out["query"] = "\n".join(texts)
    return out


def merge_payload(payload: Any, patch: dict[str, Any], message: dict[str, Any] | None) -> Any:
    """The stored payload with `patch` merged in and `message` appended to the A2A history."""
    out: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {}
    if not isinstance(payload, dict) and payload is not None and not patch:
        return payload
    out.update(patch)
    if message is not None:
        a2a = dict(out.get("a2a") or {})
        task = dict(a2a.get("task") or {})
        task["history"] = [*(task.get("history") or []), message]
        a2a["task"] = task
        out["a2a"] = a2a
    return out


__all__ = ["merge_payload", "message_patch"]
