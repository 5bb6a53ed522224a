"""The sidecar's HTTP shell against real sockets: every failure to get an answer is one
`HttpError`, an answer is status + body + content type."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from asya_sidecar.http import HttpError, open_http

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


@asynccontextmanager
async def answering(reply: bytes) -> AsyncIterator[str]:
    """A loopback server that answers every request with the bytes `reply`; its base URL."""

    async def answer(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def test_connection_refused_is_an_http_error() -> None:
    async with open_http(connections=1) as http:
        with pytest.raises(HttpError, match="Connect"):
            await http.post(f"http://127.0.0.1:{_closed_port()}/x", b"{}")


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "a body cut short"),
        (b"NOT HTTP AT ALL\r\n\r\n", "not HTTP"),
    ],
)
async def test_a_broken_answer_is_an_http_error(reply: bytes, what: str) -> None:
    with anyio.fail_after(10):
        async with answering(reply) as url, open_http(connections=1) as http:
            with pytest.raises(HttpError):
                await http.get(f"{url}/x")


async def test_an_answer_carries_status_body_and_content_type() -> None:
    body = b"not json"
    reply = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )
    with anyio.fail_after(10):
        async with answering(reply) as url, open_http(connections=1) as http:
            got = await http.post(f"{url}/x", b"{}")
    assert (got.status, got.body, got.content_type) == (503, body, "text/plain")
    with pytest.raises(ValueError):
        got.json()
