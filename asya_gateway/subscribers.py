"""What subscribers receive: published events (`Item`), each encoded once and shared, and
every watcher's bounded queue of them (`Subscriber`). Synchronous but for `Subscriber.wait`."""

from __future__ import annotations

from collections import deque
from typing import Final

import anyio
import msgspec

from .service import FlyUpdate, StatusUpdate, TaskUpdate, TaskView
from .sse import encode_sse, one_line_size
from .state import TaskRecord, update_data, view

_encoder: Final = msgspec.json.Encoder()
_dict: Final = msgspec.json.Decoder(dict)


class Item:
    """One published event, shared by every subscriber and encoded once. A progress update or
    a one-line FLY is encoded when first read, so one nobody streams never is (with no client
    watching, encoding was most of what publishing cost; A2A and MCP watchers read `update`,
    never the SSE bytes); every other event at once."""

    __slots__ = ("_sse", "event_id", "fly", "name", "record", "size")

    def __init__(
        self,
        event_id: int,
        *,
        sse: bytes | None = None,
        name: str = "update",
        fly: bytes | None = None,  # the FLY dict's JSON (FLY events)
        record: TaskRecord | None = None,  # the task after the change (status events)
    ) -> None:
        self.event_id = event_id
        self.name = name
        self.fly = fly
        self.record = record
        self._sse = sse
        if sse is None and record is None and fly is not None:
            size = one_line_size(name, fly, event_id)  # a one-line FLY: counted, not encoded
            if size is not None:
                self.size = size
                return
        if sse is None and (record is None or not _small(record)):
            # A multi-line FLY, a result, an error or a pause: measured, not guessed.
            sse = self.sse
        #: What the replay ring counts: the encoded length, or a bound on it.
        self.size = len(sse) if sse is not None else _bound(self)

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            data = self.fly if self.record is None else _encoder.encode(update_data(self.record))
            self._sse = encode_sse(self.name, data or b"{}", self.event_id)
        return self._sse

    @property
    def task(self) -> TaskView | None:
        """The client's view of the change, built only if a subscriber asks: most changes
        have no reader but the SSE bytes above."""
        return None if self.record is None else view(self.record)

    def update(self) -> TaskUpdate:
        task = self.task
        if task is not None:
            return StatusUpdate(event_id=self.event_id, task=task)
        return FlyUpdate(event_id=self.event_id, data=_dict.decode(self.fly or b"{}"))


def _small(rec: TaskRecord) -> bool:
    """A progress update: every field short (no result, error, message or pause)."""
    return (
        rec.result is msgspec.UNSET
        and rec.error is msgspec.UNSET
        and rec.message is None
        and rec.status != "paused"
    )


# An update's fixed part: its keys, progress, timestamp, the `id:`/`event:`/`data:` lines.
_UPDATE_FIXED: Final = 160


def _bound(item: Item) -> int:
    """An upper bound on the encoded length of an item not encoded yet: JSON at most doubles
    printable ASCII (a quote or a backslash takes two bytes) and at most sextuples the rest
    (`\\u0000`)."""
    rec = item.record
    assert rec is not None  # progress updates; one-line FLYs are counted exactly in __init__
    text = rec.id + rec.status + rec.state + (rec.actor or "")
    return _UPDATE_FIXED + (2 if text.isascii() and text.isprintable() else 6) * len(text)


class Subscriber:
    """One watcher's queue of items."""

    __slots__ = ("_waiting", "_wakeup", "dropped", "finished", "queue", "task_id")

    def __init__(self, task_id: str, maxlen: int) -> None:
        self.task_id = task_id
        # Bounded; overflow drops the OLDEST event (a late client prefers fresh tokens and the
        # terminal update, which is always the newest) and counts it in `dropped`.
        self.queue: deque[Item] = deque(maxlen=maxlen)
        self.dropped = 0
        self.finished = False  # no more events will come: drain `queue`, then close
        self._wakeup = anyio.Event()
        self._waiting = False  # `wait` sleeps on `_wakeup`: the next push must set it

    def push(self, item: Item) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(item)
        if self._waiting:  # one wake-up per burst, not an Event.set per FLY
            self._waiting = False
            self._wakeup.set()

    def finish(self) -> None:
        self.finished = True
        self._wakeup.set()

    def drain(self) -> list[Item]:
        items = list(self.queue)
        self.queue.clear()
        return items

    def drain_sse(self) -> bytes:
        """Everything queued, as one chunk (one socket write per wake-up)."""
        return b"".join(item.sse for item in self.drain())

    async def wait(self) -> None:
        """Return once something is queued or the stream is finished."""
        if self.queue or self.finished:
            return
        self._wakeup = anyio.Event()
        self._waiting = True
        await self._wakeup.wait()


__all__ = ["Item", "Subscriber"]
