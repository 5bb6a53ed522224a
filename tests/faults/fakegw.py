"""A stand-in gateway on a real TCP port, served from the test's event loop, that misbehaves
on demand: healthy, slow, answering 500s, answering garbage. It records every request.

Plain HTTP/1.1 with keep-alive, just enough for the sidecar's httpx client; `down` is simply
not starting one (a closed port).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import SocketStream

Mode = Literal["healthy", "slow", "error500", "garbage"]

__all__ = ["FakeGateway", "Mode", "Request", "fake_gateway"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    at: float  # time.time(), comparable with the handlers' trace
    body: bytes


@dataclass
class FakeGateway:
    mode: Mode = "healthy"
    delay: float = 2.0  # seconds per request in `slow` mode
    url: str = ""
    requests: list[Request] = field(default_factory=list)

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for r in self.requests if r.method == method and contains in r.path)

    async def _answer(self, method: str, path: str) -> bytes:
        if self.mode == "slow":
            await anyio.sleep(self.delay)
        if self.mode == "error500":
            return _response(500, b'{"error": "boom"}')
        if self.mode == "garbage":
            # A status line and headers that parse, then a body that is not what was asked for.
            return _response(200, b"\x00\xff<html>not json", ctype=b"text/html")
        if method == "GET":
            return _response(200, b'{"status": "running"}')
        return _response(204, b"")

    async def _serve(self, stream: SocketStream) -> None:
        buf = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    try:
                        buf += await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                body, buf = buf[:length], buf[length:]
                self.requests.append(Request(method, path, time.time(), body))
                try:
                    await stream.send(await self._answer(method, path))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return


def _response(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 204: b"No Content", 500: b"Internal Server Error"}[status]
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
        status,
        reason,
        ctype,
        len(body),
    )
    return head + body


@contextlib.asynccontextmanager
async def fake_gateway(mode: Mode = "healthy", delay: float = 2.0) -> AsyncIterator[FakeGateway]:
    gw = FakeGateway(mode=mode, delay=delay)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    gw.url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, gw._serve)
        try:
            yield gw
        finally:
            tg.cancel_scope.cancel()


async def _serve_forever(mode: str, delay: float, port: int) -> None:
    assert mode in ("healthy", "slow", "error500", "garbage"), mode
    gw = FakeGateway(mode=mode, delay=delay)  # type: ignore[arg-type]
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    await listener.serve(gw._serve)


def main() -> None:
    """`python -m tests.faults.fakegw MODE DELAY PORT`: the stand-in as its own process."""
    import sys

    mode, delay, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    anyio.run(_serve_forever, mode, delay, port)


if __name__ == "__main__":
    main()
