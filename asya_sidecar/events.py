"""An envelope's ordered gateway events (`EventStream`) and what the client knows per gateway
(`GatewayState`: batching, legacy, back-offs, circuit). No HTTP here: `gateway.py` POSTs."""

from __future__ import annotations

from typing import Any, Final

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from .circuit import Circuit
from .metrics import Metrics

log = structlog.get_logger("asya.sidecar.gateway")

Event = dict[str, Any]

# After a flush that ran out of time, flushes to that gateway are skipped for a shorter while:
# a busy but healthy gateway soon gets its ordering back; a slow one costs at most one flush
# budget per worker per window.
_FLUSH_BACKOFF: Final = 5.0


def fly_event(data: dict[str, Any]) -> Event:
    return {"type": "fly", "data": data}


def status_event(state: str, data: dict[str, Any]) -> Event:
    return {"type": "status", "status": state, "data": data}


class GatewayState:
    """What we learned about one gateway: whether it takes batches, whether it is legacy-only,
    whether it is slow (skip the waits on it) and whether its circuit is open."""

    __slots__ = ("batches", "circuit", "flush_after", "legacy", "preflight_after")

    def __init__(self) -> None:
        self.batches = True
        self.legacy = False
        self.preflight_after = 0.0  # monotonic time before which pre-flights are skipped
        self.flush_after = 0.0  # likewise for flushes
        self.circuit = Circuit()

    def skip_preflight(self, now: float) -> bool:
        return now < self.preflight_after or self.circuit.is_open(now)

    def skip_flush(self, now: float) -> bool:
        return now < self.flush_after or self.circuit.is_open(now)


class EventStream:
    """The ordered event queue of one envelope; `close()` when the envelope is done."""

    def __init__(
        self,
        send: MemoryObjectSendStream[Event] | None,
        metrics: Metrics,
        state: GatewayState | None = None,
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._state = state
        self._queued = 0  # events accepted by put()
        self._handled = 0  # events the forwarder has POSTed or dropped
        self._progress = anyio.Event()

    def _handled_some(self, n: int) -> None:
        """Forwarder side: `n` more events are out of the way (delivered or dropped)."""
        self._handled += n
        self._progress.set()
        self._progress = anyio.Event()

    async def flush(self, within: float) -> bool:
        """Wait (at most `within` s) until every event queued so far is delivered or dropped.

        Not at all when the gateway is known slow or its circuit is open; a flush that runs out
        of time marks the gateway slow. True if everything was flushed.
        """
        target = self._queued
        if self._send is None or self._handled >= target:
            return True
        st = self._state
        if within <= 0 or (st is not None and st.skip_flush(anyio.current_time())):
            return False
        with anyio.move_on_after(within):
            while self._handled < target:
                await self._progress.wait()
            return True
        if st is not None:
            st.flush_after = anyio.current_time() + _FLUSH_BACKOFF
            log.info(
                "gateway slow to take events; not waiting on it for a while",
                budget=within,
                seconds=_FLUSH_BACKOFF,
            )
        return False

    def put(self, event: Event) -> None:
        """Queue an event; never waits. Full buffer -> dropped and counted."""
        if self._send is None:
            if event["type"] == "fly":
                self._metrics.fly_dropped.inc()
            return
        try:
            self._send.send_nowait(event)
            self._queued += 1
        except anyio.WouldBlock:
            if event["type"] == "fly":
                self._metrics.fly_dropped.inc()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def fly(self, data: dict[str, Any]) -> None:
        self.put(fly_event(data))

    def status(self, state: str, data: dict[str, Any]) -> None:
        self.put(status_event(state, data))

    def close(self) -> None:
        if self._send is not None:
            self._send.close()


class NullStream(EventStream):
    """Reporting is off for this envelope: everything is discarded silently."""

    def __init__(self) -> None:
        pass

    async def flush(self, within: float) -> bool:
        return True

    def put(self, event: Event) -> None:
        return None

    def close(self) -> None:
        return None


__all__ = ["Event", "EventStream", "GatewayState", "NullStream", "fly_event", "status_event"]
