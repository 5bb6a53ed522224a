"""The gateway's task feed: one long-lived SSE connection per gateway to
`GET {gw}/api/v1/mesh/feed` (`event: task`, data `{"id", "status"}`), so that a task canceled,
failed or paused at the gateway reaches the envelope running it here within a second
(sidecar-gateway.md "Per envelope" step 6), and pre-flights can be answered without a GET.

A 404 means the gateway has no feed: the sidecar falls back to pre-flight GETs and no in-flight
cancel. The feed says only what happens while it is connected, so on every (re)connect the tasks
being watched are asked for once (`GET {gw}/api/v1/mesh/{id}`): a task canceled while the feed
was down (a gateway restarting, a replica's bus gap) still stops the handler running it.
Bounded: the last `SEEN_CAP` statuses are remembered (oldest forgotten first); watchers are the
envelopes in flight. Knows nothing about queues, the runtime or the machine.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import anyio
import msgspec
import structlog

from .http import Http, HttpError, Streaming

log = structlog.get_logger("asya.sidecar.feed")

SEEN_CAP: Final = 4096
#: Statuses that stop an envelope running here.
STOPPING: Final = frozenset({"canceled", "failed", "paused", "succeeded"})
# Capped at 2 s: a cancel issued while the feed is away waits for the reconnect (a refused
# connect every 2 s costs nothing).
_RECONNECT: Final = (0.1, 0.25, 0.5, 1.0, 2.0)
#: At most this many watched tasks are asked about at once after a reconnect.
_RECHECK_LIMIT: Final = 8
#: A feed that ended sooner than this counts as a failure (back off; say so at most once).
_SHORT_LIVED: Final = 30.0


def stopped_status(answer: object) -> str | None:
    """The status in a `GET /api/v1/mesh/{id}` answer if it is one the feed would have sent
    (canceled, paused, failed at its deadline), else None: the same rule as the gateway's."""
    if not isinstance(answer, dict):
        return None
    status, error = answer.get("status"), answer.get("error")
    if status in ("canceled", "paused"):
        return str(status)
    if status == "failed" and isinstance(error, dict) and error.get("type") == "Timeout":
        return "failed"
    return None


class _TaskLine(msgspec.Struct):
    id: str
    status: str


_decode = msgspec.json.Decoder(_TaskLine)


class Feed:
    """What one gateway's feed said, and who wants to hear about which task."""

    def __init__(
        self,
        http: Http,
        gw: str,
        on_connected: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self._http = http
        self._gw = gw
        self.url = f"{gw}/api/v1/mesh/feed"
        self.connected = False
        self._on_connected = on_connected
        self.unsupported = ""  # why this gateway has no feed (a 404, not SSE), if it has none
        self._refused = False  # 401/403 seen (warned once)
        self._connects = 0
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._watchers: dict[str, Callable[[str], None]] = {}

    def status(self, task_id: str) -> str | None:
        """What the feed said about `task_id` (the pre-flight answer while connected)."""
        return self._seen.get(task_id)

    def watch(self, task_id: str, on_stop: Callable[[str], None]) -> Callable[[], None]:
        """Call `on_stop(status)` when the task stops at the gateway (at once if it already
        has); returns the function that stops watching."""
        known = self._seen.get(task_id)
        if known in STOPPING:
            on_stop(known)
            return lambda: None
        self._watchers[task_id] = on_stop
        return lambda: self._watchers.pop(task_id, None) and None

    def learned(self, task_id: str, status: str) -> None:
        """What a GET said about `task_id`, newer than what the feed last told."""
        self._saw(task_id, status)

    def _saw(self, task_id: str, status: str) -> None:
        self._seen[task_id] = status
        self._seen.move_to_end(task_id)
        while len(self._seen) > SEEN_CAP:  # overflow policy: forget the oldest
            self._seen.popitem(last=False)
        if status in STOPPING and (cb := self._watchers.pop(task_id, None)) is not None:
            cb(status)

    async def run(self) -> None:
        """Keep the connection open (reconnecting with a back-off) until cancelled or 404."""
        failures = 0
        while not self.unsupported:
            started = anyio.current_time()
            try:
                await self._once()
                # A feed that ends at once (a proxy closing idle streams, a gateway restarting
                # in a loop) must not turn into a reconnect every half second.
                failures = 0 if anyio.current_time() - started > _SHORT_LIVED else failures
            except HttpError as exc:
                log.debug("task feed lost", url=self.url, error=repr(exc))
            finally:
                if self.connected:
                    self.connected = False
                    self._on_connected(False)
            if self.unsupported:
                log.info(
                    "gateway has no task feed; using pre-flight GETs",
                    url=self.url,
                    reason=self.unsupported,
                )
                return
            await anyio.sleep(_RECONNECT[min(failures, len(_RECONNECT) - 1)])
            failures += 1

    async def _once(self) -> None:
        async with self._http.stream(self.url) as r:  # no read timeout: an idle feed is alive
            if r.status == 404:
                self.unsupported = "answered 404"
                return
            if r.status in (401, 403) and not self._refused:
                self._refused = True  # once: it retries with a back-off, as for any refusal
                log.warning(
                    "gateway refused the task feed: is ASYA_GATEWAY_TOKEN its mesh token?",
                    url=self.url,
                    status=r.status,
                )
            if r.status >= 300:
                raise HttpError(f"feed refused: HTTP {r.status}")
            ctype = r.content_type
            if not ctype.startswith("text/event-stream"):
                # Not a feed (an older or foreign gateway answering every GET): as for a 404.
                self.unsupported = f"answered {r.status} {ctype or 'without a content type'}"
                return
            self.connected = True
            self._on_connected(True)
            # Said once at info; every reconnect after that only at debug.
            (log.debug if self._connects else log.info)("task feed connected", url=self.url)
            self._connects += 1
            lost: HttpError | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._recheck, list(self._watchers))
                try:
                    await self._read(r)
                except HttpError as exc:
                    lost = exc  # raised below, outside the group: not as an ExceptionGroup
                tg.cancel_scope.cancel()  # the feed ended: a reconnect asks again
            if lost is not None:
                raise lost

    async def _recheck(self, task_ids: list[str]) -> None:
        """Ask the gateway once about each task watched before this connection existed."""
        limit = anyio.Semaphore(_RECHECK_LIMIT)

        async def one(task_id: str) -> None:
            async with limit:
                try:
                    r = await self._http.get(
                        f"{self._gw}/api/v1/mesh/{task_id}",
                        headers={"X-Asya-Envelope-ID": task_id},
                        within=5.0,
                    )
                    answer = r.json() if r.status == 200 else None
                except (HttpError, ValueError) as exc:
                    log.debug("task recheck failed", task_id=task_id, error=repr(exc))
                    return
            status = stopped_status(answer)
            if status is not None and task_id in self._watchers:
                self._saw(task_id, status)

        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(one, task_id)

    async def _read(self, r: Streaming) -> None:
        event, data = "", ""
        async for line in r.lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line:  # end of one SSE event
                if event == "task" and data:
                    try:
                        t = _decode.decode(data)
                    except msgspec.DecodeError:
                        log.debug("bad task feed line", data=data[:200])
                    else:
                        self._saw(t.id, t.status)
                event, data = "", ""


__all__ = ["SEEN_CAP", "STOPPING", "Feed", "stopped_status"]
