"""The gateway client: FLY/status events with batching and fallbacks, never blocking routing.

Per gateway one `GatewayOutbox` (every envelope's events, each envelope's in order and bounded) is
drained by one sender task, owned by the client's task group. The sender POSTs everything that
piled up while the previous POST was in flight in one request: many envelopes' events to
`POST /api/v1/mesh/events` (each event carries its task's `id`), or, from a gateway without that
endpoint (404/405) or one envelope's, `POST /api/v1/mesh/{id}/events` with a JSON array. Routing
only ever calls `EnvelopeEvents.put`; a full lane merges text FLYs (`forwarder.merge`) or drops
and counts. Routing waits on the gateway in one bounded place only: the pre-flight
(`preflight.Preflights`, answered by the gateway's task feed while connected).
FLY-before-terminal is the gateway's job, by counting (`seq`, `n`, `flies`), not ours by
waiting. POSTs go through a per-gateway circuit breaker (`circuit.Circuit`). Knows nothing
about queues or the runtime.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import msgspec
import structlog

from asya_mesh.events import Event, encode_events

from .feed import Feed
from .forwarder import EnvelopeEvents, GatewayOutbox, GatewayState, NullEvents, Pending
from .http import Http, HttpError, open_http
from .metrics import Metrics
from .preflight import DEFAULT_PREFLIGHT_TIMEOUT, Preflights
from .reports import fly_total, legacy, resolve_gateway, safe_gateway_url
from .routing import GATEWAY_URL, MESH_STATUS
from .stream import PATH as EVENTS_PATH
from .stream import EventStream

log = structlog.get_logger("asya.sidecar.gateway")


_TIMEOUT: Final = 5.0
# Pre-flights have a pool of their own: a FLY backlog never queues ahead of them.
_PREFLIGHT_CONNECTIONS: Final = 8
# Concurrent event POSTs (= the FLY pool's connections). Forwarders beyond it wait on our own
# semaphore (FIFO, O(1)) rather than in the client's pool: with a slow gateway hundreds of
# forwarders pile up.
_MAX_POSTS: Final = 64
_RETRY_DELAYS: Final = (0.1, 0.3)  # "short retry, then drop"
_BATCH_REJECTED: Final = (400, 415, 422)
_MAX_FORWARDERS: Final = 512  # open envelopes per gateway; beyond this, events are dropped
_MAX_BATCH: Final = 2048  # events per POST
#: How long the sender holds progress statuses for more to join them (FLYs, terminal statuses
#: and pauses go at once). A POST costs both ends more than the events in it; with the linger
#: the gateway's CPU per routed task halved in `bench/sidecar_bench.py --gateway`.
DEFAULT_STATUS_LINGER: Final = 0.005
_json: Final = msgspec.json.Encoder()


def _tagged(e: Pending) -> bytes:
    """One event of a many-task batch: the event object with its task's `id` first."""
    return b'{"id":' + _json.encode(e.envelope_id) + b"," + _json.encode(e.event)[1:]


_SHUTDOWN_GRACE: Final = 3.0
_MAX_GATEWAYS: Final = 64


class GatewayClient:
    def __init__(
        self,
        http: Http,
        tg: anyio.abc.TaskGroup,
        metrics: Metrics,
        *,
        default_url: str | None,
        buffer: int,
        preflight_http: Http | None = None,
        preflight_timeout: float = DEFAULT_PREFLIGHT_TIMEOUT,
        feeds: bool = False,
        status_linger: float = DEFAULT_STATUS_LINGER,
        event_stream: bool = False,
    ) -> None:
        self._http = http
        self._linger = status_linger
        self._event_stream = event_stream
        self._streams: dict[str, EventStream] = {}
        # Every envelope names its gateway (the header the gateway set): parsed once per value.
        self._resolved: dict[tuple[Any, Any], str | None] = {}
        self._preflight_http = preflight_http or http
        self._tg = tg
        self._metrics = metrics
        self.default_url = safe_gateway_url(default_url)
        self._buffer = buffer
        self._states: dict[str, GatewayState] = {}
        self._boxes: dict[str, GatewayOutbox] = {}
        self._changed = anyio.Event()
        self._posts = anyio.Semaphore(_MAX_POSTS)
        self._pre = Preflights(
            self._preflight_http,
            http,
            tg,
            metrics,
            self._state,
            timeout=preflight_timeout,
            feeds=feeds,
        )

    def resolve(self, headers: dict[str, Any]) -> str | None:
        """The gateway for an envelope: header (if safe) else the configured one; None = off."""
        key = (headers.get(GATEWAY_URL), headers.get(MESH_STATUS))
        try:
            return self._resolved[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable header value: not worth remembering
            return self._resolve(headers)
        if len(self._resolved) >= _MAX_GATEWAYS:  # header values: bound what we remember
            self._resolved.clear()
        url = self._resolved[key] = self._resolve(headers)
        return url

    def _resolve(self, headers: dict[str, Any]) -> str | None:
        url, unsafe = resolve_gateway(headers, self.default_url)
        if unsafe:  # once per header value: a flood of such envelopes logs one line
            log.warning(
                "ignoring unsafe x-asya-gateway-url", value=str(headers.get(GATEWAY_URL))[:200]
            )
        return url

    def _state(self, gw: str) -> GatewayState:
        st = self._states.get(gw)
        if st is None:
            if len(self._states) >= _MAX_GATEWAYS:
                # Gateway URLs come from envelope headers: bound what we remember about them.
                # Overflow policy: forget everything; it is re-learned on the next calls.
                self._states.clear()
            st = self._states[gw] = GatewayState()
        return st

    def feed(self, gw: str) -> Feed | None:
        """The gateway's task feed, started on first use."""
        return self._pre.feed(gw)

    def watch(
        self, gw: str, envelope_id: str, on_stop: Callable[[str], None]
    ) -> Callable[[], None]:
        """`on_stop(status)` when the gateway's feed says the task stopped; returns unwatch."""
        return self._pre.watch(gw, envelope_id, on_stop)

    async def preflight(self, gw: str, envelope_id: str) -> str | None:
        """The task's status at the gateway, or None on any failure (carry on)."""
        return await self._pre.status(gw, envelope_id)

    def open(self, gw: str | None, envelope_id: str) -> EnvelopeEvents:
        """An ordered event lane for one envelope in its gateway's outbox."""
        if gw is None:
            return NullEvents()
        box = self._boxes.get(gw)
        if box is None:
            if len(self._boxes) >= _MAX_GATEWAYS:
                return EnvelopeEvents(None, self._metrics)
            box = self._boxes[gw] = GatewayOutbox(self._buffer, self._metrics)
        if box.lanes >= _MAX_FORWARDERS:
            return EnvelopeEvents(None, self._metrics)
        lane = EnvelopeEvents(box, self._metrics, envelope_id)
        if not box.running:  # the sender ends when its outbox goes idle
            box.running = True
            self._tg.start_soon(self._send_loop, gw, box)
        return lane

    async def _send_loop(self, gw: str, box: GatewayOutbox) -> None:
        """The gateway's one sender: everything that piled up during the last POST goes in
        the next one (many envelopes' events together), so a busy sidecar makes few requests.
        Progress statuses alone wait up to the linger for company; anything urgent goes now."""
        try:
            while not box.idle:
                await box.wait()
                if self._linger > 0:
                    await box.linger(self._linger)
                batch = box.take(_MAX_BATCH)
                if batch:
                    box.sending = True
                    try:
                        await self._deliver_many(gw, batch)
                    finally:
                        box.sending = False
        finally:
            box.running = False
            self._changed.set()

    async def _deliver_many(self, gw: str, batch: list[Pending]) -> None:
        """POST many envelopes' events at once (`/api/v1/mesh/events`, each event carrying its
        task's `id`), else per envelope with every per-envelope fallback; order per envelope
        is the queue's."""
        st = self._state(gw)
        first = batch[0].envelope_id
        stream = self._stream(gw)
        # One envelope's events go to its own endpoint, unless a stream is up: then everything
        # goes by the stream (an LLM's token stream is one envelope's, hundreds of batches).
        if stream is not None or any(e.envelope_id != first for e in batch):
            if st.multi and not st.legacy:
                if st.circuit.is_open(anyio.current_time()):
                    self._drop([e.event for e in batch], st)
                    return
                body = b"[" + b",".join(_tagged(e) for e in batch) + b"]"
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
                    tg.start_soon(self.deliver, gw, envelope_id, events)
            return
        await self.deliver(gw, first, [e.event for e in batch])

    def _stream(self, gw: str) -> EventStream | None:
        """The gateway's event stream if it may be tried now, else None (POST)."""
        if not self._event_stream:
            return None
        stream = self._streams.get(gw)
        if stream is None:
            if len(self._streams) >= _MAX_GATEWAYS:
                return None
            stream = self._streams[gw] = EventStream(self._http, gw, answer_within=_TIMEOUT)
        return stream if stream.ready(anyio.current_time()) else None

    async def close_streams(self) -> None:
        for stream in self._streams.values():
            await stream.close()
        self._streams.clear()

    async def deliver(self, gw: str, envelope_id: str, batch: list[Event]) -> None:
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

    async def report(self, gw: str, envelope_id: str, event: Event, within: float = 10.0) -> None:
        """Deliver one event now (end actors), bounded in time; failures are logged, not raised."""
        with anyio.move_on_after(within):
            await self.deliver(gw, envelope_id, [event])

    async def report_now(
        self, gw: str, envelope_id: str, event: Event, within: float = 10.0
    ) -> bool:
        """POST one event now and say whether the gateway took it (2xx): the pause report,
        which the input's ack waits on. Retries network errors and 5xx until `within`."""
        content = encode_events([event])
        headers = {"Content-Type": "application/json", "X-Asya-Envelope-ID": envelope_id}
        url = f"{gw}/api/v1/mesh/{envelope_id}/events"
        delay = 0.1
        with anyio.move_on_after(within):
            while True:
                try:
                    r = await self._preflight_http.post(url, content, headers)
                    if r.status < 300:
                        return True
                    if r.status < 500:
                        log.warning("gateway refused a pause report", status=r.status)
                        return False
                except HttpError as exc:
                    log.debug("pause report failed", url=url, error=repr(exc))
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return False

    async def wait_idle(self) -> None:
        """Until every outbox is empty, nothing is in flight and every lane is closed."""
        while not all(b.idle for b in self._boxes.values()):
            self._changed = anyio.Event()
            await self._changed.wait()


@asynccontextmanager
async def gateway_client(
    metrics: Metrics,
    *,
    default_url: str | None,
    buffer: int,
    preflight_timeout: float = DEFAULT_PREFLIGHT_TIMEOUT,
    token: str | None = None,
    status_linger: float = DEFAULT_STATUS_LINGER,
    event_stream: bool = True,
) -> AsyncIterator[GatewayClient]:
    """A client whose forwarders all finish (or are cut off after a grace) when it closes.
    `token` (ASYA_GATEWAY_TOKEN) goes as a bearer token on every request: events (and the
    event stream's upgrade), legacy reports, the pause report, the feed and pre-flights.
    `event_stream`: batches go by one WebSocket per gateway where it has one (`stream.py`)."""
    auth = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        open_http(connections=_MAX_POSTS, headers=auth, request_seconds=_TIMEOUT) as http,
        open_http(
            connections=_PREFLIGHT_CONNECTIONS, headers=auth, request_seconds=_TIMEOUT
        ) as preflight_http,
        anyio.create_task_group() as tg,
    ):
        client = GatewayClient(
            http,
            tg,
            metrics,
            default_url=default_url,
            buffer=buffer,
            preflight_http=preflight_http,
            preflight_timeout=preflight_timeout,
            feeds=True,
            status_linger=status_linger,
            event_stream=event_stream,
        )
        if client.default_url is not None:
            client.feed(client.default_url)  # connected before the first envelope arrives
        try:
            yield client
            with anyio.move_on_after(_SHUTDOWN_GRACE):
                await client.wait_idle()
        finally:
            tg.cancel_scope.cancel()
            await client.close_streams()


__all__ = ["GatewayClient", "gateway_client", "safe_gateway_url"]
