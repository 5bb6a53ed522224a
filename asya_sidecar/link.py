"""How a batch of events reaches a gateway: by its event stream, one many-task POST, per
envelope, or upstream's legacy calls; retries, the circuit breaker, counting and dropping.

`GatewayLink.many` takes what a gateway's sender took from its outbox (many envelopes' events,
each envelope's in order) and tries, in order: the event stream (`stream.EventStream`, one
message), `POST /api/v1/mesh/events` (each event carrying its task's `id`), then per envelope
`POST /api/v1/mesh/{id}/events` (a JSON array, then one event per request after a 400/415/422)
and the legacy `/mesh/{id}/fly|progress`, each step remembered per gateway (`GatewayState`).
What none of them takes is dropped and counted. Knows nothing about outboxes or routing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import anyio
import msgspec
import structlog

from asya_mesh.events import Event, encode_events

from .forwarder import GatewayState, Pending
from .http import Http, HttpError
from .metrics import Metrics
from .reports import fly_total, legacy
from .stream import PATH as EVENTS_PATH
from .stream import EventStream

log = structlog.get_logger("asya.sidecar.gateway")

TIMEOUT: Final = 5.0  # a request's (or a stream answer's) budget
# Concurrent event POSTs (= the FLY pool's connections). Forwarders beyond it wait on our own
# semaphore (FIFO, O(1)) rather than in the client's pool: with a slow gateway hundreds of
# forwarders pile up.
MAX_POSTS: Final = 64
_RETRY_DELAYS: Final = (0.1, 0.3)  # "short retry, then drop"
_BATCH_REJECTED: Final = (400, 415, 422)
_MAX_STREAMS: Final = 64
_json: Final = msgspec.json.Encoder()


def tagged(e: Pending) -> bytes:
    """One event of a many-task batch: the event object with its task's `id` first."""
    return b'{"id":' + _json.encode(e.envelope_id) + b"," + _json.encode(e.event)[1:]


class GatewayLink:
    """Delivers batches to any gateway; `state(gw)` is what is known of each."""

    def __init__(
        self,
        http: Http,
        metrics: Metrics,
        state: Callable[[str], GatewayState],
        *,
        event_stream: bool,
    ) -> None:
        self._http = http
        self._metrics = metrics
        self._state = state
        self._event_stream = event_stream
        self._streams: dict[str, EventStream] = {}
        self._posts = anyio.Semaphore(MAX_POSTS)

    async def many(self, gw: str, batch: list[Pending]) -> None:
        """Many envelopes' events at once: by the event stream, else POSTed to
        `/api/v1/mesh/events` (each event carrying its task's `id`), else per envelope with
        every per-envelope fallback; order per envelope is the queue's."""
        st = self._state(gw)
        first = batch[0].envelope_id
        multi = st.multi and not st.legacy
        stream = self._stream(gw) if multi else None
        # One envelope's events go to its own endpoint, unless a stream is up: then everything
        # goes by the stream (an LLM's token stream is one envelope's, hundreds of batches).
        if stream is not None or any(e.envelope_id != first for e in batch):
            if multi:
                if st.circuit.is_open(anyio.current_time()):
                    self._drop([e.event for e in batch], st)
                    return
                body = b"[" + b",".join(tagged(e) for e in batch) + b"]"
                code = None
                if stream is not None and st.circuit.open_until is None:  # probes go by POST
                    code = await stream.send(body)
                    if code is not None and code < 500:
                        st.circuit.success()
                        self._metrics.gateway_streamed.inc()
                if code is None or code >= 500:  # no answer by the stream: POST it
                    code = await self._post(f"{gw}{EVENTS_PATH}", first, body, st)
                if code is not None and code < 300:
                    self._count([e.event for e in batch], batched=True)
                    return
                if code in (404, 405, *_BATCH_REJECTED):
                    st.multi = False  # an older gateway: per envelope from now on
                    log.info("gateway takes one task's events per request", gateway=gw)
                else:
                    self._drop([e.event for e in batch], st)
                    return
            lanes: dict[str, list[Event]] = {}
            for e in batch:
                lanes.setdefault(e.envelope_id, []).append(e.event)
            async with anyio.create_task_group() as tg:
                for envelope_id, events in lanes.items():
                    tg.start_soon(self.one, gw, envelope_id, events)
            return
        await self.one(gw, first, [e.event for e in batch])

    def _stream(self, gw: str) -> EventStream | None:
        """The gateway's event stream if it may be tried now, else None (POST)."""
        if not self._event_stream:
            return None
        stream = self._streams.get(gw)
        if stream is None:
            if len(self._streams) >= _MAX_STREAMS:
                return None
            stream = self._streams[gw] = EventStream(self._http, gw, answer_within=TIMEOUT)
        return stream if stream.ready(anyio.current_time()) else None

    async def close_streams(self) -> None:
        """Close every open event stream (the client is closing)."""
        for stream in self._streams.values():
            await stream.close()
        self._streams.clear()

    async def one(self, gw: str, envelope_id: str, batch: list[Event]) -> None:
        """POST `batch` in order with every fallback; failures are counted and dropped."""
        st = self._state(gw)
        if st.circuit.is_open(anyio.current_time()):
            self._drop(batch, st)  # cooling down: not even one try
            return
        events_url = f"{gw}/api/v1/mesh/{envelope_id}/events"
        if not st.legacy and len(batch) > 1 and st.batches:
            code = await self._post(events_url, envelope_id, encode_events(batch), st)
            if code is not None and code < 300:
                self._count(batch, batched=True)
                return
            if code in _BATCH_REJECTED:
                st.batches = False  # this gateway wants one event per request from now on
            elif code != 404:
                self._drop(batch, st)
                return
        # One by one, in order. After a 404 each event is retried alone first: a gateway may
        # answer 404 for one event (a status for an unknown task) and accept the others.
        for ev in batch:
            if st.legacy:
                await self._post_legacy(gw, envelope_id, ev, st)
                continue
            code = await self._post(events_url, envelope_id, encode_events([ev]), st)
            if code is not None and code < 300:
                self._count([ev], batched=False)
            elif code == 404:
                await self._post_legacy(gw, envelope_id, ev, st)
            else:
                self._drop([ev], st)

    async def _post_legacy(self, gw: str, envelope_id: str, ev: Event, st: GatewayState) -> None:
        url, body = legacy(gw, envelope_id, ev)
        code = await self._post(url, envelope_id, body, st)
        if code is not None and code < 300:
            st.legacy = True  # the new endpoint is missing but the legacy one works: stick to it
            self._count([ev], batched=False)
        else:
            self._drop([ev], st)

    async def _post(
        self, url: str, envelope_id: str, content: bytes, st: GatewayState
    ) -> int | None:
        """POST JSON with a short retry on network errors and 5xx; the final status or None.

        Every try goes through the gateway's circuit: while it is open nothing is sent.
        """
        headers = {"Content-Type": "application/json", "X-Asya-Envelope-ID": envelope_id}
        code: int | None = None
        circuit = st.circuit
        for delay in (*_RETRY_DELAYS, math.nan):
            if not circuit.allow(anyio.current_time()):
                return None
            try:
                async with self._posts:
                    r = await self._http.post(url, content, headers)
                code = r.status
            except HttpError as exc:
                code = None
                log.debug("gateway POST failed", url=url, error=repr(exc))
            if code is not None and code < 500:
                if circuit.success():
                    log.info("gateway answering again; circuit closed", url=url)
                return code
            if circuit.failure(anyio.current_time()):
                log.warning(
                    "gateway failing; circuit open: events are dropped and counted meanwhile",
                    url=url,
                    status=code,
                    failures=circuit.failures,
                    cooldown=circuit.cooldown,
                )
            if math.isnan(delay):
                break
            await anyio.sleep(delay)
        return code

    def _count(self, events: list[Event], *, batched: bool) -> None:
        n = fly_total(events)
        if n:
            self._metrics.fly_forwarded.inc(n)
            if batched:
                self._metrics.fly_batched.inc(n)

    def _drop(self, events: list[Event], st: GatewayState) -> None:
        n = fly_total(events)
        if n:
            self._metrics.fly_dropped.inc(n)
            if st.circuit.open_until is None:  # while open, the one "circuit open" line says it
                log.warning("gateway events dropped", events=len(events), fly=n)
        else:  # e.g. progress for a task the gateway does not know (sent with `queue send`)
            log.debug("gateway status events dropped", events=len(events))


__all__ = ["MAX_POSTS", "TIMEOUT", "GatewayLink", "tagged"]
