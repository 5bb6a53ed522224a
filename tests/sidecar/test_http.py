"""The sidecar's HTTP shell against real sockets: every failure to get an answer is one
`HttpError`, an answer is status + body + content type."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import pytest

from asya_sidecar.http import HttpError, open_http

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


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
    async def answer(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(10):
        async with listener, open_http(connections=1) as http, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, answer)
            with pytest.raises(HttpError):
                await http.get(f"http://127.0.0.1:{port}/x")
            tg.cancel_scope.cancel()


async def test_an_answer_carries_status_body_and_content_type() -> None:
    body = b"not json"
    reply = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )

    async def answer(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(10):
        async with listener, open_http(connections=1) as http, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, answer)
            got = await http.post(f"http://127.0.0.1:{port}/x", b"{}")
            tg.cancel_scope.cancel()
    assert (got.status, got.body, got.content_type) == (503, body, "text/plain")
    with pytest.raises(ValueError):
        got.json()
