"""What the gateway says before and during an invoke: its task feed, and the pre-flight GET.

Routing waits on the gateway in this one bounded place (`timeout`): while a gateway's feed
(`feed.Feed`) is connected it answers pre-flights with no request; otherwise one
`GET {gw}/api/v1/mesh/{id}`. A gateway that failed or was slow there is not asked for a while
(`GatewayState.preflight_after`), so a slow or dead gateway delays at most one envelope per
worker per window. Every failure means "carry on": the envelope runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import anyio
import anyio.abc
import structlog

from .feed import Feed
from .forwarder import GatewayState
from .http import Http, HttpError
from .metrics import Metrics

log = structlog.get_logger("asya.sidecar.gateway")

DEFAULT_PREFLIGHT_TIMEOUT: Final = 0.15
# After a pre-flight that failed or was slow (timeout, network error, 5xx, not JSON), skip
# pre-flights to that gateway for a while.
_SLOW_BACKOFF: Final = 30.0
_MAX_FEEDS: Final = 64  # gateway URLs come from envelope headers: bound the feeds kept open


class Preflights:
    """Per gateway, its feed (started on first use, owned by `tg`) and the pre-flight GET."""

    def __init__(
        self,
        http: Http,
        feed_http: Http,
        tg: anyio.abc.TaskGroup,
        metrics: Metrics,
        state: Callable[[str], GatewayState],
        *,
        timeout: float,
        feeds: bool,
    ) -> None:
        self._http = http  # pre-flights have a pool of their own: no FLY backlog ahead of them
        self._feed_http = feed_http
        self._tg = tg
        self._metrics = metrics
        self._state = state
        self.timeout = timeout
        self._use_feeds = feeds
        self._feeds: dict[str, Feed] = {}

    def feed(self, gw: str) -> Feed | None:
        """The gateway's task feed, started on first use (None past `_MAX_FEEDS` feeds)."""
        if not self._use_feeds:
            return None
        f = self._feeds.get(gw)
        if f is None and len(self._feeds) < _MAX_FEEDS:
            gauge = self._metrics.feed_connected
            f = self._feeds[gw] = Feed(
                self._feed_http, gw, on_connected=lambda up: gauge.inc() if up else gauge.dec()
            )
            self._tg.start_soon(f.run)
        return f

    def watch(
        self, gw: str, envelope_id: str, on_stop: Callable[[str], None]
    ) -> Callable[[], None]:
        """`on_stop(status)` when the gateway's feed says the task stopped; returns unwatch."""
        f = self.feed(gw)
        if f is None or f.unsupported:
            return lambda: None
        return f.watch(envelope_id, on_stop)

    async def status(self, gw: str, envelope_id: str) -> str | None:
        """The task's status at the gateway, or None on any failure (carry on). While the
        gateway's feed is connected it answers instead: no GET on the routing path."""
        f = self.feed(gw)
        if f is not None and f.connected:
            known = f.status(envelope_id)
            if known != "paused":
                return known
            # `paused` is the one stop that is undone (a resume): if the feed was away when
            # the resume was announced, it still says paused. Ask, and tell the feed.
            asked = await self._ask(gw, envelope_id)
            if asked is None:
                return known  # no answer: as before, the feed's word
            f.learned(envelope_id, asked)
            return asked
        return await self._ask(gw, envelope_id)

    async def _ask(self, gw: str, envelope_id: str) -> str | None:
        """`GET {gw}/api/v1/mesh/{id}`'s status, or None on any failure (carry on)."""
        st = self._state(gw)
        if st.skip_preflight(anyio.current_time()):
            return None
        try:
            with anyio.fail_after(self.timeout):
                r = await self._http.get(
                    f"{gw}/api/v1/mesh/{envelope_id}", headers={"X-Asya-Envelope-ID": envelope_id}
                )
        except (HttpError, TimeoutError) as exc:
            self._failed(gw, st, str(exc) if isinstance(exc, HttpError) else repr(exc))
            return None
        if r.status >= 500:
            self._failed(gw, st, f"HTTP {r.status}")
            return None
        if r.status >= 300:
            return None
        try:
            status = r.json().get("status")
        except Exception:  # an undecodable answer: carry on, and stop asking for a while
            self._failed(gw, st, "answer is not a JSON object")
            return None
        return status if isinstance(status, str) else None

    def _failed(self, gw: str, st: GatewayState, error: str) -> None:
        if anyio.current_time() >= st.preflight_after:  # log the change, not every envelope
            log.warning(
                "pre-flight failed or too slow; skipping pre-flights to this gateway for a while",
                gateway=gw,
                error=error,
                budget=self.timeout,
                seconds=_SLOW_BACKOFF,
            )
        st.preflight_after = anyio.current_time() + _SLOW_BACKOFF


__all__ = ["DEFAULT_PREFLIGHT_TIMEOUT", "Preflights"]
