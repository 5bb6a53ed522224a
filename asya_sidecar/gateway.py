"""The gateway client: FLY/status events with batching and fallbacks, never blocking routing.

Per gateway one `GatewayOutbox` (every envelope's events, each envelope's in order and bounded) is
drained by one sender task, owned by the client's task group. The sender sends everything that
piled up while the previous batch was in flight as one batch (`link.GatewayLink`: the event
stream, else one POST, else per envelope). Routing only ever calls `EnvelopeEvents.put`; a full
lane merges text FLYs (`forwarder.merge`) or drops and counts. Routing waits on the gateway in
one bounded place only: the pre-flight (`preflight.Preflights`, answered by the gateway's task
feed while connected). FLY-before-terminal is the gateway's job, by counting (`seq`, `n`,
`flies`), not ours by waiting. Knows nothing about queues or the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import structlog

from asya_mesh.events import Event, encode_events

from .feed import Feed
from .forwarder import EnvelopeEvents, GatewayOutbox, GatewayState, NullEvents
from .http import Http, HttpError, open_http
from .link import MAX_POSTS, TIMEOUT, GatewayLink
from .metrics import Metrics
from .preflight import DEFAULT_PREFLIGHT_TIMEOUT, Preflights
from .reports import resolve_gateway, safe_gateway_url
from .routing import GATEWAY_URL, MESH_STATUS

log = structlog.get_logger("asya.sidecar.gateway")


# Pre-flights have a pool of their own: a FLY backlog never queues ahead of them.
_PREFLIGHT_CONNECTIONS: Final = 8
_MAX_FORWARDERS: Final = 512  # open envelopes per gateway; beyond this, events are dropped
_MAX_BATCH: Final = 2048  # events per POST
#: How long the sender holds progress statuses for more to join them (FLYs, terminal statuses
#: and pauses go at once). A POST costs both ends more than the events in it; with the linger
#: the gateway's CPU per routed task halved in `bench/sidecar_bench.py --gateway`.
DEFAULT_STATUS_LINGER: Final = 0.005
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
        self._linger = status_linger
        self._link = GatewayLink(http, metrics, self._state, event_stream=event_stream)
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
                        await self._link.many(gw, batch)
                    finally:
                        box.sending = False
                    for e in batch:
                        if e.lane.sent is not None and e.lane.finished:
                            e.lane.sent.set()
        finally:
            box.running = False
            self._changed.set()

    async def report(self, gw: str, envelope_id: str, event: Event, within: float = 10.0) -> None:
        """Deliver one event (an end actor's terminal report) with the gateway's next batch,
        and wait until it went out, bounded in time; failures are logged, not raised. The
        end actor's concurrent reports thus share one message (or POST)."""
        lane = self.open(gw, envelope_id)
        sent = lane.sent = anyio.Event()
        accepted = lane.put(event)
        lane.close()
        with anyio.move_on_after(within):
            if accepted:
                await sent.wait()
            else:  # no room in the outbox (too many gateways or open lanes): on its own
                await self._link.one(gw, envelope_id, [event])

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

    async def close_streams(self) -> None:
        """Close the event streams (the client is closing; a test ends)."""
        await self._link.close_streams()

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
        open_http(connections=MAX_POSTS, headers=auth, request_seconds=TIMEOUT) as http,
        open_http(
            connections=_PREFLIGHT_CONNECTIONS, headers=auth, request_seconds=TIMEOUT
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
