"""Gateway events on their way out: one `GatewayOutbox` per gateway holding the ordered events of
every envelope (`EnvelopeEvents`, a bounded lane each), the coalescing of FLYs under pressure,
and what the client knows per gateway (`GatewayState`). No HTTP here: `gateway.py` POSTs."""

from __future__ import annotations

from collections import deque
from typing import Final

import anyio
import msgspec

from asya_mesh.events import Event, FlyEvent, StatusEvent

from .circuit import Circuit
from .metrics import Metrics

# A coalesced text FLY stops growing here (the gateway caps request bodies); past it the
# next FLY is dropped and counted like any overflow.
MAX_MERGED_BYTES: Final = 256 * 1024
#: Statuses that only say how far an envelope got; the sender may hold them a moment so that
#: more envelopes' go in the same POST. Anything else (a FLY, a terminal status, a pause) is
#: urgent, and so is an outbox this full.
PROGRESS: Final = frozenset({"received", "processing", "completed"})
URGENT_BACKLOG: Final = 256
_decode: Final = msgspec.json.Decoder()
_encode: Final = msgspec.json.Encoder()


class GatewayState:
    """What we learned about one gateway: whether it takes batches (one task's, many tasks'),
    whether it is legacy-only, whether it is slow (skip pre-flights to it), its circuit."""

    __slots__ = ("batches", "circuit", "legacy", "multi", "preflight_after")

    def __init__(self) -> None:
        self.batches = True
        self.multi = True  # `POST /api/v1/mesh/events` (many tasks' events in one request)
        self.legacy = False
        self.preflight_after = 0.0  # monotonic time before which pre-flights are skipped
        self.circuit = Circuit()

    def skip_preflight(self, now: float) -> bool:
        return now < self.preflight_after or self.circuit.is_open(now)


class Pending:
    """One queued event of one envelope (mutable: a FLY may be merged into it until taken)."""

    __slots__ = ("envelope_id", "event", "lane")

    def __init__(self, lane: EnvelopeEvents, event: Event) -> None:
        self.lane = lane
        self.envelope_id = lane.envelope_id
        self.event = event


def merge(last: FlyEvent, new: FlyEvent) -> FlyEvent | None:
    """`new` folded into `last` (which comes just before it), or None if they do not merge:
    two `{"partial": true, "text": …}` FLYs → their texts concatenated; two FLYs with the same
    keys and no text (progress-like) → the latest; `n` says how many FLYs the result stands for."""
    if last.seq is not None and (new.seq is None or last.seq + last.n != new.seq):
        return None
    if last.seq is None and new.seq is not None:
        return None
    a, b = _decode.decode(last.data), _decode.decode(new.data)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    text_a, text_b = a.get("text"), b.get("text")
    if a.get("partial") is True and b.get("partial") is True:
        if not isinstance(text_a, str) or not isinstance(text_b, str) or a.keys() != b.keys():
            return None
        data = _encode.encode({**b, "text": text_a + text_b})
    elif "text" not in a and "text" not in b and a.keys() == b.keys():
        data = bytes(new.data)  # progress-like: only the latest matters
    else:
        return None
    if len(data) > MAX_MERGED_BYTES:
        return None
    return FlyEvent(data=msgspec.Raw(data), seq=last.seq, n=last.n + new.n)


class GatewayOutbox:
    """One gateway's queue of events, many envelopes interleaved, each envelope's in order.

    Bounded per envelope (`buffer` events not yet taken by the sender; status events always
    fit: a machine reports a handful per envelope). Overflow policy for FLYs: merged into the
    envelope's last queued FLY when they merge (`merge`), else dropped and counted."""

    def __init__(self, buffer: int, metrics: Metrics) -> None:
        self.buffer = buffer
        self._metrics = metrics
        self._entries: deque[Pending] = deque()  # taken from the left: O(1) per event
        self._ready = anyio.Event()
        self._urgent = anyio.Event()  # set while something queued should not wait
        self.lanes = 0  # envelopes open on this gateway
        self.sending = False
        self.running = False  # a sender task drains this outbox

    def put(self, lane: EnvelopeEvents, event: Event) -> bool:
        if isinstance(event, FlyEvent) and lane.pending >= self.buffer:
            last = lane.last
            merged = (
                merge(last.event, event)
                if last is not None and isinstance(last.event, FlyEvent)
                else None
            )
            if merged is None:
                self._metrics.fly_dropped.inc(event.n)
                return False
            assert last is not None
            last.event = merged
            self._metrics.fly_coalesced.inc(event.n)
            return True
        entry = Pending(lane, event)
        self._entries.append(entry)
        lane.pending += 1
        lane.last = entry
        self._ready.set()
        if (
            not isinstance(event, StatusEvent)
            or event.status not in PROGRESS
            or len(self._entries) >= URGENT_BACKLOG
        ):
            self._urgent.set()
        return True

    def take(self, limit: int) -> list[Pending]:
        """The oldest `limit` events, now in flight (no longer merged into)."""
        entries = self._entries
        batch = [entries.popleft() for _ in range(min(limit, len(entries)))]
        for e in batch:
            e.lane.pending -= 1
            if e.lane.last is e:
                e.lane.last = None
        if not self._entries:
            self._ready = anyio.Event()
            self._urgent = anyio.Event()
        return batch

    async def wait(self) -> None:
        await self._ready.wait()

    async def linger(self, seconds: float) -> None:
        """Return after `seconds`, or at once when something urgent is queued."""
        with anyio.move_on_after(seconds):
            await self._urgent.wait()

    @property
    def idle(self) -> bool:
        return not self._entries and not self.sending and self.lanes == 0


class EnvelopeEvents:
    """The ordered event lane of one envelope in its gateway's outbox; `close()` when done.

    `put` never waits and says whether the event was accepted: an accepted FLY (delivered or
    merged into the one before it) is one the envelope's FLY count includes
    (`x-asya-fly-count`), a dropped one is not.
    """

    __slots__ = ("_box", "_closed", "_metrics", "envelope_id", "last", "pending", "sent")

    def __init__(self, box: GatewayOutbox | None, metrics: Metrics, envelope_id: str = "") -> None:
        self._box = box
        self._metrics = metrics
        self._closed = box is None
        self.envelope_id = envelope_id
        self.pending = 0
        self.last: Pending | None = None
        # Set by the sender once every event of this closed lane went out (or was dropped).
        self.sent: anyio.Event | None = None
        if box is not None:
            box.lanes += 1

    def put(self, event: Event) -> bool:
        """Queue an event; never waits. Full lane (or no outbox) -> merged or dropped."""
        if self._box is not None and not self._closed:
            return self._box.put(self, event)
        if isinstance(event, FlyEvent):
            self._metrics.fly_dropped.inc(event.n)
        return False

    @property
    def finished(self) -> bool:
        """Closed, and nothing of it waits in the outbox."""
        return self._closed and self.pending == 0

    def close(self) -> None:
        if not self._closed and self._box is not None:
            self._closed = True
            self._box.lanes -= 1
            self._box._ready.set()  # the sender re-checks idleness


class NullEvents(EnvelopeEvents):
    """Reporting is off for this envelope: everything is discarded silently (not counted)."""

    def __init__(self) -> None:
        pass

    def put(self, event: Event) -> bool:
        return False

    def close(self) -> None:
        return None


__all__ = [
    "MAX_MERGED_BYTES",
    "EnvelopeEvents",
    "GatewayOutbox",
    "GatewayState",
    "NullEvents",
    "Pending",
    "merge",
]
