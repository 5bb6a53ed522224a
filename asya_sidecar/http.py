"""The sidecar's HTTP client to its gateways (events, pre-flights, the task feed): aiohttp.

Why not httpx (the rest of the project's client): on the routing path the sidecar makes one
request per batch of events, and per request httpx cost 870-910 µs of client CPU here against
aiohttp's 200-210 µs (`bench/http_clients_bench.py`, same server, same run). With a healthy
gateway those POSTs were nearly all the CPU a sidecar spent beyond routing (py-spy).

A thin shell: `Http.post`/`get` return an `Answer` (status, body, content type) or raise
`HttpError` for any failure to get one (network, timeout, a broken response), so callers catch
one exception and never see aiohttp's; `Http.websocket` opens a `Socket` (the event stream),
and a server that answers the upgrade with anything but 101 raises `Refused`. Knows nothing
about events or gateways.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NamedTuple

import aiohttp
import anyio
import msgspec

__all__ = ["Answer", "Http", "HttpError", "Refused", "Socket", "Streaming", "open_http"]

# Below uvicorn's default keep-alive (5 s): a connection the server is about to close is not
# picked for the next request (that request would fail with "server disconnected").
_KEEPALIVE: Final = 4.0
_FAILURES: Final = (aiohttp.ClientError, TimeoutError, OSError, ValueError)
_json: Final = msgspec.json.Decoder()


class HttpError(Exception):
    """No answer: the connection failed or broke, the request timed out, or the response
    was malformed."""


class Refused(HttpError):
    """The server answered a WebSocket upgrade with `status`, not 101: it has no such stream."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upgrade refused with {status}")
        self.status = status


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        """The body as JSON; raises ValueError if it is not JSON."""
        try:
            return _json.decode(self.body)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None


class Streaming:
    """An open streaming response: its status and content type, and its body line by line."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._r = response
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "")

    async def lines(self) -> AsyncIterator[str]:
        """Each line of the body without its line ending; HttpError if the stream breaks."""
        content = self._r.content
        while True:
            try:
                raw = await content.readline()
            except _FAILURES as exc:
                raise HttpError(repr(exc)) from None
            if not raw:  # end of the body
                return
            yield raw.decode("utf-8", "replace").rstrip("\r\n")


class Socket:
    """An open WebSocket: send a message, receive one; HttpError when it breaks or is late."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except _FAILURES as exc:
            raise HttpError(repr(exc)) from None

    async def receive(self, within: float) -> bytes:
        """The next data message (text or binary) within `within` seconds."""
        try:
            msg = await self._ws.receive(timeout=within)
        except _FAILURES as exc:
            raise HttpError(repr(exc)) from None
        if msg.type == aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        raise HttpError(f"stream ended ({msg.type.name}, {msg.data!r})")

    async def close(self) -> None:
        with contextlib.suppress(*_FAILURES):  # closing a broken socket: nothing more to do
            await self._ws.close()


class Http:
    """Requests on one pooled aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def _request(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        within: float | None,
    ) -> Answer:
        t = aiohttp.ClientTimeout(total=within) if within is not None else None
        try:
            async with self._session.request(
                method, url, data=content, headers=headers, timeout=t
            ) as r:
                body = await r.read()
                return Answer(r.status, body, r.headers.get("Content-Type", ""))
        except _FAILURES as exc:
            raise HttpError(repr(exc)) from None

    async def post(
        self,
        url: str,
        content: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        within: float | None = None,
    ) -> Answer:
        """POST `content`; `within` seconds at most (default: the client's)."""
        return await self._request("POST", url, content, headers, within)

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        within: float | None = None,
    ) -> Answer:
        """GET; `within` seconds at most (default: the client's)."""
        return await self._request("GET", url, None, headers, within)

    async def websocket(self, url: str, *, connect_timeout: float = 5.0) -> Socket:
        """A WebSocket to `url` (http/https: upgraded); `Refused` if the server says no."""
        t = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0)
        try:
            with anyio.fail_after(connect_timeout):
                ws = await self._session.ws_connect(url, timeout=t, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            raise Refused(exc.status) from None
        except _FAILURES as exc:
            raise HttpError(repr(exc)) from None
        return Socket(ws)

    @asynccontextmanager
    async def stream(self, url: str, *, connect_timeout: float = 5.0) -> AsyncIterator[Streaming]:
        """GET `url` and hold the response open (no read timeout: an idle stream is alive)."""
        t = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=None)
        try:
            r = await self._session.get(url, timeout=t)
        except _FAILURES as exc:
            raise HttpError(repr(exc)) from None
        try:
            yield Streaming(r)
        finally:
            r.close()  # a stream read part-way is not reusable: drop its connection


@asynccontextmanager
async def open_http(
    *,
    connections: int,
    headers: Mapping[str, str] | None = None,
    request_seconds: float = 5.0,
) -> AsyncIterator[Http]:
    """A pooled client (`connections` at most at once, kept alive; each request done within
    `request_seconds` unless it says otherwise), closed on exit."""
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=_KEEPALIVE)
    async with aiohttp.ClientSession(
        connector=connector,
        headers=dict(headers or {}),
        timeout=aiohttp.ClientTimeout(total=request_seconds),
        # the sidecar talks to the gateway it was given: no proxy or .netrc from the env
        trust_env=False,
    ) as session:
        yield Http(session)
