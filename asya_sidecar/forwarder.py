"""An envelope's ordered gateway events (`EnvelopeEvents`) and what the client knows per gateway
(`GatewayState`: batching, legacy, back-offs, circuit). No HTTP here: `gateway.py` POSTs."""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from asya_mesh.events import Event, FlyEvent

from .circuit import Circuit
from .metrics import Metrics


class GatewayState:
    """What we learned about one gateway: whether it takes batches, whether it is legacy-only,
    whether it is slow (skip pre-flights to it) and whether its circuit is open."""

    __slots__ = ("batches", "circuit", "legacy", "preflight_after")

    def __init__(self) -> None:
        self.batches = True
        self.legacy = False
        self.preflight_after = 0.0  # monotonic time before which pre-flights are skipped
        self.circuit = Circuit()

    def skip_preflight(self, now: float) -> bool:
        return now < self.preflight_after or self.circuit.is_open(now)


class EnvelopeEvents:
    """The ordered event queue of one envelope; `close()` when the envelope is done.

    Bounded; overflow policy: the new event is dropped (FLYs counted in `fly_dropped_total`).
    `put` never waits and says whether the event was accepted: an accepted FLY is one the
    envelope's FLY count includes (`x-asya-fly-count`), a dropped one is not.
    """

    __slots__ = ("_metrics", "_send")

    def __init__(self, send: MemoryObjectSendStream[Event] | None, metrics: Metrics) -> None:
        self._send = send
        self._metrics = metrics

    def put(self, event: Event) -> bool:
        """Queue an event; never waits. Full buffer (or no forwarder) -> dropped and counted."""
        if self._send is not None:
            try:
                self._send.send_nowait(event)
                return True
            except anyio.WouldBlock:
                pass
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return False
        if isinstance(event, FlyEvent):
            self._metrics.fly_dropped.inc(event.n)
        return False

    def close(self) -> None:
        if self._send is not None:
            self._send.close()


class NullEvents(EnvelopeEvents):
    """Reporting is off for this envelope: everything is discarded silently (not counted)."""

    def __init__(self) -> None:
        pass

    def put(self, event: Event) -> bool:
        return False

    def close(self) -> None:
        return None


__all__ = ["EnvelopeEvents", "GatewayState", "NullEvents"]
