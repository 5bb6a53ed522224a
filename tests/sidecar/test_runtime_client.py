"""The runtime client against a scripted fake runtime on a real Unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from asya_runtime.codec import FrameWriter
from asya_runtime.wire import Emit, End, Envelope, Fly, Hello, Route
from asya_sidecar.runtime_client import (
    InvokeNotDelivered,
    ProtocolMismatch,
    RuntimeLost,
    RuntimeUnavailable,
    connect,
    wait_ready,
)

pytestmark = pytest.mark.anyio

ENV = Envelope(id="x", route=Route(prev=[], curr="a", next=[]), payload=1)
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, FrameWriter], Awaitable[None]]


@asynccontextmanager
async def fake_runtime(sock: Path, script: Script, protocol: int = 1) -> AsyncIterator[None]:
    """A scripted runtime: says hello, then runs `script` per connection. (Plain asyncio
    streams: the test pins the asyncio backend.)"""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        w = FrameWriter()
        writer.write(w.encode(Hello(protocol=protocol, runtime="fake", handler="h", pid=1)))
        try:
            await script(reader, writer, w)
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(sock))
    (sock.parent / "runtime-ready").touch()
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def test_frames_arrive_in_order_and_idle_close_is_noticed(short_tmp: Path) -> None:
    async def script(r: asyncio.StreamReader, wr: asyncio.StreamWriter, w: FrameWriter) -> None:
        if not await r.read(65536):  # the invoke (or a readiness probe closing)
            return
        route = Route(prev=["a"], curr="", next=[])
        wr.write(w.encode_many([Fly(data={"i": 1}), Emit(payload=2, route=route), End()]))
        await wr.drain()
        # then close while idle

    sock = short_tmp / "rt.sock"
    with anyio.fail_after(5):
        async with fake_runtime(sock, script):
            await wait_ready(str(sock), 5)
            async with connect(str(sock)) as conn:
                assert conn.hello is not None and conn.hello.runtime == "fake"
                frames = [f async for f in conn.invoke(ENV)]
                assert [type(f) for f in frames] == [Fly, Emit, End]
                with anyio.fail_after(2):
                    while conn.alive():  # noqa: ASYNC110 - the peer closes; no event to wait on
                        await anyio.sleep(0.01)


async def test_malformed_frame_and_eof_mid_invocation_are_runtime_lost(short_tmp: Path) -> None:
    async def garbage(r: asyncio.StreamReader, wr: asyncio.StreamWriter, w: FrameWriter) -> None:
        if not await r.read(65536):
            return
        wr.write(b"\x00\x00\x00\x03abc")
        await wr.drain()

    sock = short_tmp / "rt.sock"
    with anyio.fail_after(5):
        async with fake_runtime(sock, garbage), connect(str(sock)) as conn:
            with pytest.raises(RuntimeLost, match="malformed"):
                async for _ in conn.invoke(ENV):
                    pass


async def test_protocol_mismatch_fails_at_once(short_tmp: Path) -> None:
    async def idle(r: asyncio.StreamReader, wr: asyncio.StreamWriter, w: FrameWriter) -> None:
        if not await r.read(65536):
            return

    sock = short_tmp / "rt.sock"
    with anyio.fail_after(5):
        async with fake_runtime(sock, idle, protocol=2):
            with pytest.raises(ProtocolMismatch, match="protocol 2"):
                await wait_ready(str(sock), 60)  # not after 60 s: at once


async def test_wait_ready_times_out_without_runtime(short_tmp: Path) -> None:
    with anyio.fail_after(5), pytest.raises(RuntimeUnavailable, match="not ready"):
        await wait_ready(str(short_tmp / "none.sock"), 0.3)


async def test_invoke_to_a_runtime_that_already_closed_is_not_delivered(short_tmp: Path) -> None:
    # A runtime shutting down closes idle connections; an invoke written after that never
    # reached it, which the client reports as such (requeue), not as a lost invocation (sump).
    closed = anyio.Event()

    async def close_at_once(
        r: asyncio.StreamReader, wr: asyncio.StreamWriter, w: FrameWriter
    ) -> None:
        await wr.drain()
        wr.close()
        closed.set()

    sock = short_tmp / "rt.sock"
    with anyio.fail_after(5):
        async with fake_runtime(sock, close_at_once), connect(str(sock)) as conn:
            await closed.wait()
            with pytest.raises((InvokeNotDelivered, RuntimeLost)) as info:
                async for _ in conn.invoke(ENV):
                    pass
            if isinstance(info.value, RuntimeLost):
                # The write raced the close and landed in the buffer: the next one cannot.
                with pytest.raises(InvokeNotDelivered):
                    async for _ in conn.invoke(ENV):
                        pass
