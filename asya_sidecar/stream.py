"""One gateway's event stream: `POST /api/v1/mesh/events` bodies over one WebSocket.

The sender of a gateway's outbox sends one batch at a time and waits for its answer, so the
stream holds one message in flight: sent, then answered (`{"status": N, ...}`, N what the POST
would have answered). A message costs the sidecar about a third of a POST's CPU and the
gateway about two thirds (`bench/http_clients_bench.py`); a busy sidecar sends hundreds a second.

When the stream cannot carry a batch it says so (`send` returns None) and the caller POSTs the
batch instead, so nothing here can lose an event: a gateway without the stream (the upgrade
answered 404, 403, ...) is asked again only after `REPROBE` seconds; a stream that broke or
answered late is closed and reopened after a backoff. An answer lost with its connection means
the batch is POSTed again: the same at-least-once as a POST retried after a timeout.
"""

from __future__ import annotations

from typing import Final

import anyio
import msgspec
import structlog

from .http import Http, HttpError, Refused, Socket

log = structlog.get_logger("asya.sidecar.gateway")

PATH: Final = "/api/v1/mesh/events"
#: A gateway that refused the upgrade is asked again after this long (it may have been upgraded).
REPROBE: Final = 300.0
# A socket idle this long is replaced rather than reused. The server pings every 20 s and
# closes a socket whose pong is 20 s late, and a ping is answered only while we read (the
# next answer): a socket used within 15 s has answered every ping in time.
IDLE: Final = 15.0
_BACKOFF: Final = (0.5, 1.0, 2.0, 5.0, 10.0)


class _Reply(msgspec.Struct):
    status: int


_reply = msgspec.json.Decoder(_Reply)


class EventStream:
    """The stream to one gateway, opened on first use; `send` is called by one task at a time."""

    def __init__(self, http: Http, gw: str, *, answer_within: float, idle: float = IDLE) -> None:
        self._http = http
        self._idle = idle
        self._url = gw + PATH
        self._within = answer_within
        self._socket: Socket | None = None
        self._used = 0.0
        self._next_try = 0.0
        self._failures = 0

    def ready(self, now: float) -> bool:
        """Whether `send` may be tried now (not refused or backing off)."""
        return self._socket is not None or now >= self._next_try

    async def send(self, body: bytes) -> int | None:
        """The gateway's answer to `body` (its HTTP status), or None: the caller POSTs it."""
        if self._socket is not None and anyio.current_time() - self._used >= self._idle:
            await self.close()
        try:
            if self._socket is None:
                self._socket = await self._http.websocket(self._url)
                log.debug("gateway event stream open", url=self._url)
            await self._socket.send(body)
            raw = await self._socket.receive(self._within)
            status = _reply.decode(raw).status
        except Refused as exc:
            self._next_try = anyio.current_time() + REPROBE
            log.info("gateway has no event stream; events go by POST", status=exc.status)
            return None
        except (HttpError, msgspec.DecodeError) as exc:
            await self.close()
            delay = _BACKOFF[min(self._failures, len(_BACKOFF) - 1)]
            self._failures += 1
            self._next_try = anyio.current_time() + delay
            log.debug("gateway event stream broke; POST meanwhile", error=str(exc), retry_in=delay)
            return None
        except BaseException:  # cancelled mid-message: its answer may still come, out of line
            await self.close()
            raise
        self._failures = 0
        self._used = anyio.current_time()
        return status

    async def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await socket.close()


__all__ = ["IDLE", "PATH", "REPROBE", "EventStream"]
