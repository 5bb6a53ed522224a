"""The envelope's own `status` object, built in one place, and upstream's RFC3339 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asya_runtime.wire import Envelope

from .outgoing import Names

_last_stamp: list[tuple[int, str]] = [(-1, "")]


def rfc3339(now: float) -> str:
    """Upstream's timestamp format: RFC3339 UTC, whole seconds (memoised per second)."""
    sec = int(now)
    cached = _last_stamp[0]
    if cached[0] == sec:
        return cached[1]
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last_stamp[0] = (sec, text)
    return text


def parse_rfc3339(text: Any) -> float | None:
    """POSIX seconds of an RFC3339 string, or `None` when absent or unparsable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def kept_fields(status: dict[str, Any]) -> dict[str, Any]:
    """The status fields that survive every hop."""
    return {k: status[k] for k in ("created_at", "deadline_at") if k in status}


def build_status(
    base: dict[str, Any],
    now: float,
    *,
    keep_all: bool = False,
    created: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """The one place an envelope's `status` is built: `base`'s hop-surviving fields (all of
    them with `keep_all`), then `fields`, then `updated_at`, and `created_at` if `base` had
    none (unless `created=False`)."""
    ts = rfc3339(now)
    status = dict(base) if keep_all else kept_fields(base)
    status.update(fields)
    status["updated_at"] = ts
    if created:
        status.setdefault("created_at", ts)
    return status


def failed_fields(reason: str, message: str, actor: str) -> dict[str, Any]:
    return {
        "phase": "failed",
        "reason": reason,
        "actor": actor,
        "attempt": 1,
        "max_attempts": 1,
        "error": {"message": message, "type": reason},
    }


def failed_status(
    env: Envelope,
    reason: str,
    error: dict[str, Any],
    names: Names,
    now: float,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    return build_status(
        env.status,
        now,
        phase="failed",
        reason=reason,
        actor=names.actor,
        attempt=env.status.get("attempt", 1),
        max_attempts=max_attempts
        if max_attempts is not None
        else env.status.get("max_attempts", 1) or 1,
        error=error,
    )


__all__ = [
    "build_status",
    "failed_fields",
    "failed_status",
    "kept_fields",
    "parse_rfc3339",
    "rfc3339",
]
