"""The sidecars' task feed (`GET /api/v1/mesh/feed`): which task changes stop an envelope, and
the subscribers they go to.

`feed_status` is pure: a stored change is a feed line when the task was canceled, paused or
failed at its deadline, and when a paused task is resumed (`running`: sidecars answer
pre-flights from what the feed last said, so they must hear the resume too). `TaskFeed` holds
the connected sidecars' subscribers; each line is encoded once and shared.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .sse import encode_sse
from .state import TaskRecord
from .subscribers import Item, Subscriber

_encoder: Final = msgspec.json.Encoder()


def feed_status(rec: TaskRecord) -> str | None:
    """What the feed says of this change, or None (most changes: nothing)."""
    timeout = isinstance(rec.error, dict) and rec.error.get("type") == "Timeout"
    if rec.status in ("canceled", "paused") or (rec.status == "failed" and timeout):
        return rec.status
    if rec.state == "resumed":
        return "running"
    return None


class TaskFeed:
    """The feed's subscribers; each one's queue holds `buffer` lines."""

    def __init__(self, buffer: int = 4096) -> None:
        self.buffer = buffer
        self._subs: set[Subscriber] = set()

    def subscribe(self) -> Subscriber:
        sub = Subscriber("", self.buffer)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def changed(self, rec: TaskRecord) -> None:
        """A stored change (on every replica, in bus order): a line for every sidecar if it is
        one the feed says."""
        status = feed_status(rec)
        if status is None or not self._subs:
            return
        item = Item(0, sse=encode_sse("task", _encoder.encode({"id": rec.id, "status": status})))
        for sub in self._subs:
            sub.push(item)

    def close(self) -> None:
        """End every feed (shutdown, or the bus lost messages: sidecars reconnect)."""
        for sub in self._subs:
            sub.finish()
        self._subs.clear()


__all__ = ["TaskFeed", "feed_status"]
