"""Benchmark: asya-runtime (as a subprocess) against a raw asyncio + msgspec Unix-socket echo.

    .venv/bin/python bench/runtime_bench.py [--seconds 3] [--flies 100000] [--core 20000]
    .venv/bin/python bench/runtime_bench.py --core-only   (the in-process core alone, ~1 s)

Measures, in one run (each figure printed with its ratio against the floor of the same run):
  raw echo      (floor) a raw asyncio + msgspec echo server in its own process: round trips/s
                on one reused connection, and its CPU µs per round trip, one at a time and with
                8 connections kept busy; small frames/s one way
  runtime       trivial async handler (util:echo): envelopes/s on one reused connection, the
                runtime's CPU µs per envelope (utime + stime of the process, all threads) with
                8 connections kept busy (as behind a sidecar with concurrency) and one envelope
                at a time (each round trip then pays a sleep and a wake-up, which on a VM costs
                more than the work), and envelopes/s with 8 concurrent connections; FLY
                frames/s for one invocation yielding N FLYs from an async generator
                (util:fly_flood) with yield-to-read latency p50/p99 (the handler stamps
                time.perf_counter_ns(), the client compares on receipt); the same from a sync
                generator (`sync_fly_flood` below, run in a worker thread); latency of a
                trivial invocation while another connection streams FLYs for ~1 s.
  runtime core  the same trivial envelopes through the server's own connection code in this
                process, with a fake socket and an event loop that never makes a syscall
                (`runtime_core`): the runtime's own CPU µs per envelope, against the floor of
                msgspec decoding the same invoke frame and encoding the emit and `end` frames.
                On a VM where each syscall and wake-up is dear, the whole-process CPU above is
                mostly the kernel's; this is the part the runtime's code decides.
Targets (issues 12 and 15): echo ≥ 0.8× raw, CPU per trivial envelope ≤ 25 µs, FLY ≥ 300,000/s,
sync-generator FLY ≥ 100,000/s, FLY p99 ≤ 200 µs, trivial invocation during a 1 s stream ≤ 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import upstream_runtime  # noqa: E402

from asya_runtime.codec import NEED_DATA, FrameWriter, sidecar_reader  # noqa: E402
from asya_runtime.gcpolicy import freeze_startup_objects  # noqa: E402
from asya_runtime.loader import load_handler  # noqa: E402
from asya_runtime.server import ServerConfig, _Server  # noqa: E402
from asya_runtime.session import Session  # noqa: E402
from asya_runtime.wire import (  # noqa: E402
    Emit,
    End,
    Envelope,
    Fly,
    Hello,
    Invoke,
    Route,
    SidecarFrame,
    decode_envelope,
    invoke_frame,
)


def sync_fly_flood(payload: Any) -> Any:
    """(a handler, `bench.runtime_bench:sync_fly_flood`) util:fly_flood as a sync generator."""
    n = int(payload.get("n", 1000))
    now = time.perf_counter_ns
    for i in range(n):
        yield "FLY", {"i": i, "t": now()}
    yield payload


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- raw baseline -----------------------------------------------------------------------------


class _Msg(msgspec.Struct):
    i: int
    text: str = ""


async def _raw_server(path: str) -> asyncio.AbstractServer:
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(_Msg)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(4)
            n = int.from_bytes(first, "big")
            if n == 0:  # one-way mode: blast frames
                count = int.from_bytes(await reader.readexactly(4), "big")
                buf = bytearray()
                for i in range(count):
                    body = enc.encode(_Msg(i=i, text="tok"))
                    buf += len(body).to_bytes(4, "big") + body
                    if len(buf) > 65536:
                        writer.write(bytes(buf))
                        buf.clear()
                        await writer.drain()
                writer.write(bytes(buf))
                await writer.drain()
                return
            while True:
                msg = dec.decode(await reader.readexactly(n))
                body = enc.encode(msg)
                writer.write(len(body).to_bytes(4, "big") + body)
                n = int.from_bytes(await reader.readexactly(4), "big")
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path)


async def raw_round_trips(path: str, seconds: float, pid: int) -> tuple[float, float]:
    reader, writer = await asyncio.open_unix_connection(path)
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(_Msg)
    body = enc.encode(_Msg(i=1, text="hello"))
    frame = len(body).to_bytes(4, "big") + body
    n = 0
    cpu0 = cpu_seconds(pid)
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        writer.write(frame)
        size = int.from_bytes(await reader.readexactly(4), "big")
        dec.decode(await reader.readexactly(size))
        n += 1
    rate = n / (time.perf_counter() - t0)
    cpu_us = (cpu_seconds(pid) - cpu0) / n * 1e6
    writer.close()
    return rate, cpu_us


async def raw_concurrent(path: str, seconds: float, pid: int, conns: int = 8) -> float:
    """The raw echo server's CPU µs per round trip with `conns` connections kept busy."""
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(_Msg)
    body = enc.encode(_Msg(i=1, text="hello"))
    frame = len(body).to_bytes(4, "big") + body
    pairs = [await asyncio.open_unix_connection(path) for _ in range(conns)]
    counts = [0] * conns
    end = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        reader, writer = pairs[i]
        while time.perf_counter() < end:
            writer.write(frame)
            size = int.from_bytes(await reader.readexactly(4), "big")
            dec.decode(await reader.readexactly(size))
            counts[i] += 1

    cpu0 = cpu_seconds(pid)
    await asyncio.gather(*(loop(i) for i in range(conns)))
    cpu_us = (cpu_seconds(pid) - cpu0) / sum(counts) * 1e6
    for _, writer in pairs:
        writer.close()
    return cpu_us


async def raw_one_way(path: str, count: int) -> float:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    writer.write((0).to_bytes(4, "big") + count.to_bytes(4, "big"))
    dec = msgspec.msgpack.Decoder(_Msg)
    t0 = time.perf_counter()
    buf = b""
    got = 0
    while got < count:
        data = await reader.read(1 << 16)
        if not data:
            break
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            n = int.from_bytes(buf[pos : pos + 4], "big")
            if len(buf) - pos - 4 < n:
                break
            dec.decode(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            got += 1
        buf = buf[pos:]
    rate = got / (time.perf_counter() - t0)
    writer.close()
    return rate


# -- runtime client ---------------------------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r = reader
        self.w = writer
        self.fr = sidecar_reader()
        self.fw = FrameWriter()

    @classmethod
    async def open(cls, path: str) -> Client:
        r, w = await asyncio.open_unix_connection(path, limit=1 << 20)
        c = cls(r, w)
        assert isinstance(await c.recv(), Hello)
        return c

    async def recv(self) -> Any:
        while True:
            f = self.fr.next_frame()
            if f is not NEED_DATA:
                return f
            self.fr.feed(await self.r.read(1 << 16))

    def send_invoke(self, frame: bytes) -> None:
        self.w.write(frame)

    async def call(self, frame: bytes) -> None:
        self.w.write(frame)
        while not isinstance(await self.recv(), End):
            pass

    def close(self) -> None:
        self.w.close()


def _invoke_bytes(payload: Any) -> bytes:
    env = Envelope(route=Route(prev=[], curr="a", next=["b"]), payload=payload)
    return FrameWriter().encode(invoke_frame(env))


# -- the runtime's per-envelope core, in process ----------------------------------------------


class _FakeSocket:
    """The sidecar's end of the connection, in process: `recv` hands the runtime one invoke
    frame each time its previous envelope's reply (emit + `end`) has been `send`; counted
    envelopes are timed with process_time between the warm-up and the last one."""

    fd = 1 << 20  # never a real descriptor: only `_CoreSelector` looks at it

    def __init__(self, frame: bytes, hello: int, reply: int, warm: int, n: int) -> None:
        self.frame, self.hello, self.reply = frame, hello, reply
        self.warm, self.total = warm, warm + n
        self.pending: bytes | None = frame
        self.sent = self.done = 0
        self.t0 = self.t1 = 0.0

    def fileno(self) -> int:
        return self.fd

    def recv(self, size: int) -> bytes:
        data = self.pending
        if data is None:
            raise BlockingIOError
        self.pending = None
        return data

    def send(self, data: bytearray) -> int:
        self.sent += len(data)
        done = (self.sent - self.hello) // self.reply
        if done > self.done:
            self.done = done
            if done == self.warm:
                freeze_startup_objects()  # as the runtime does before it serves
                self.t0 = time.process_time()
            if done == self.total:
                self.t1 = time.process_time()
            self.pending = self.frame if done < self.total else b""  # then EOF
        return len(data)

    def shutdown(self, how: int) -> None:
        pass


class _CoreSelector(selectors.SelectSelector):
    """The event loop's selector, minus the syscall: the fake socket is readable when it
    holds a frame (or its EOF); nothing else ever is."""

    def __init__(self, sock: _FakeSocket) -> None:
        super().__init__()
        self.sock = sock

    def select(self, timeout: float | None = None) -> list[Any]:
        if self.sock.pending is not None:
            key = self._fd_to_key.get(self.sock.fd)
            if key is not None:
                return [(key, selectors.EVENT_READ)]
        if timeout is None:
            raise RuntimeError("the in-process runtime would wait forever")
        return []


class _FakeStream:
    def __init__(self, sock: _FakeSocket) -> None:
        self.sock = sock

    def extra(self, attribute: Any) -> Any:
        return self.sock

    async def aclose(self) -> None:
        pass


def runtime_core(n: int, warm: int = 2000) -> float:
    """The runtime's CPU µs per trivial async envelope with no socket and no syscall.

    The server's own connection, unchanged (`Session.run`: its state table, sans-IO
    reader, `Outbox`, `FrameWriter`, the loop reader callback `_on_readable`, the inline
    `_invoke` with `decode_envelope` and `drive`), on an asyncio loop whose selector reports
    the fake socket readable instead of asking the kernel. Per envelope the loop runs what it
    runs on a real socket: the reader callback, the connection task, the scheduled flush.
    """
    frame = _invoke_bytes({"text": "hello"})
    emit = Emit(payload={"text": "hello"}, route=Route(prev=["a"], curr="b", next=[]))
    reply = len(FrameWriter().encode(emit)) + len(FrameWriter().encode(End()))
    handler = load_handler("examples.handlers.util:echo")

    async def run() -> None:
        server = _Server(handler, ServerConfig(socket_path=Path("rt.sock")))
        sock.hello = len(FrameWriter().encode(server.shared.hello))
        await Session(_FakeStream(sock), server.shared).run()  # type: ignore[arg-type]

    sock = _FakeSocket(frame, 0, reply, warm, n)
    loop = asyncio.SelectorEventLoop(_CoreSelector(sock))
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    if sock.done != warm + n or sock.sent != sock.hello + (warm + n) * reply:
        raise RuntimeError(f"{sock.done} envelopes answered ({sock.sent} bytes), not {warm + n}")
    return (sock.t1 - sock.t0) / n * 1e6


def core_floor(n: int) -> float:
    """The least any runtime does per trivial envelope: msgspec decode of the same invoke frame
    into the same Structs, and encode of the emit and `end` frames it answers with (µs)."""
    frame = _invoke_bytes({"text": "hello"})
    frames = msgspec.msgpack.Decoder(SidecarFrame)
    enc = msgspec.msgpack.Encoder()
    out = bytearray()
    end = End()
    gc.collect()
    t0 = time.process_time()
    for _ in range(n):
        size = int.from_bytes(frame[:4], "big")
        inv = frames.decode(frame[4 : 4 + size])
        assert type(inv) is Invoke
        env = decode_envelope(inv.envelope)
        r = env.route
        emit = Emit(
            payload=env.payload,
            route=Route(prev=[*r.prev, r.curr], curr=r.next[0], next=r.next[1:]),
        )
        for f in (emit, end):
            body = enc.encode(f)
            out += len(body).to_bytes(4, "big")
            out += body
        out.clear()
    return (time.process_time() - t0) / n * 1e6


def print_core(n: int) -> None:
    core, floor = runtime_core(n), core_floor(n)
    print(
        f"runtime core per trivial async envelope (in-process, no syscalls): {core:.1f} us; "
        f"floor (msgspec decode + encode of the same frames) {floor:.1f} us = "
        f"{core / floor:.1f}x [target <= 25 us] ({n:,} envelopes)"
    )


def _wait_for_file(proc: subprocess.Popen[bytes], path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args} did not start")
        time.sleep(0.02)  # polling for a file another process creates


def start_raw_server(sock: Path) -> subprocess.Popen[bytes]:
    """The floor in its own process, like the runtime, so its CPU can be read the same way."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--raw-server", str(sock)], env=env)
    _wait_for_file(proc, sock)
    return proc


def raw_server_main(path: str) -> None:
    async def run() -> None:
        server = await _raw_server(path)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def start_runtime(spec: str, sock: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ASYA_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asya_runtime", "run", spec, "--socket", str(sock)], env=env
    )
    _wait_for_file(proc, sock.parent / "runtime-ready")
    return proc


async def rt_round_trips(path: str, seconds: float, pid: int) -> tuple[float, float]:
    """(envelopes/s, runtime CPU µs per envelope) on one reused connection."""
    c = await Client.open(path)
    frame = _invoke_bytes({"text": "hello"})
    for _ in range(200):
        await c.call(frame)
    n = 0
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        await c.call(frame)
        n += 1
    rate = n / (time.perf_counter() - t0)
    cpu_us = (cpu_seconds(pid) - cpu0) / n * 1e6
    c.close()
    return rate, cpu_us


async def rt_concurrent(path: str, seconds: float, pid: int, conns: int = 8) -> tuple[float, float]:
    """(envelopes/s, runtime CPU µs per envelope) with `conns` connections kept busy."""
    clients = [await Client.open(path) for _ in range(conns)]
    frame = _invoke_bytes({"text": "hello"})
    counts = [0] * conns
    end = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        while time.perf_counter() < end:
            await clients[i].call(frame)
            counts[i] += 1

    t0 = time.perf_counter()
    cpu0 = cpu_seconds(pid)
    await asyncio.gather(*(loop(i) for i in range(conns)))
    rate = sum(counts) / (time.perf_counter() - t0)
    cpu_us = (cpu_seconds(pid) - cpu0) / sum(counts) * 1e6
    for c in clients:
        c.close()
    return rate, cpu_us


async def rt_flies(path: str, n: int) -> tuple[float, float, float]:
    c = await Client.open(path)
    await c.call(_invoke_bytes({"n": 1000}))  # warm up
    lat: list[int] = []
    append = lat.append
    fr = c.fr
    read = c.r.read
    c.send_invoke(_invoke_bytes({"n": n}))
    t0 = time.perf_counter()
    now = time.perf_counter_ns
    while True:  # a tight loop: the reader must keep up, or we measure our own backlog
        f = fr.next_frame()
        if f is NEED_DATA:
            fr.feed(await read(1 << 16))
        elif type(f) is Fly:
            append(now() - f.data["t"])
        elif type(f) is End:
            break
    dt = time.perf_counter() - t0
    c.close()
    lat.sort()
    return len(lat) / dt, lat[len(lat) // 2] / 1000, lat[int(len(lat) * 0.99)] / 1000


def quick_client(path: str, seconds: float) -> None:
    """(--quick-client mode, its own process) trivial invocations on one connection, every
    10 ms for `seconds`; prints the latencies in ms, one per line."""
    import socket

    reader = sidecar_reader()
    frame = _invoke_bytes({"n": 0})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)

    def until(kind: type) -> None:
        while True:
            f = reader.next_frame()
            if f is NEED_DATA:
                reader.feed(sock.recv(65536))
            elif isinstance(f, kind):
                return

    until(Hello)
    end = time.perf_counter() + seconds
    out = []
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        sock.sendall(frame)
        until(End)
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    print("\n".join(f"{x:.4f}" for x in out))


async def rt_latency_during_stream(path: str, stream_n: int) -> tuple[float, float, float, float]:
    """A trivial invocation from another process, while this one drains a ~1 s FLY stream."""
    busy = await Client.open(path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t_stream = time.perf_counter()
    busy.send_invoke(_invoke_bytes({"n": stream_n}))
    quick = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--quick-client",
        path,
        "--seconds",
        "0.8",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    while not isinstance(await busy.recv(), End):
        pass
    stream_s = time.perf_counter() - t_stream
    out, _ = await quick.communicate()
    busy.close()
    samples = sorted(float(x) for x in out.split())
    return stream_s, samples[len(samples) // 2], samples[int(len(samples) * 0.99)], samples[-1]


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="asya-bench-", dir="/tmp"))
    try:
        raw_path = tmp / "raw.sock"
        raw = start_raw_server(raw_path)
        try:
            raw_rt, raw_cpu = await raw_round_trips(str(raw_path), args.seconds, raw.pid)
            raw_busy_cpu = await raw_concurrent(str(raw_path), args.seconds, raw.pid)
            raw_ow = await raw_one_way(str(raw_path), 500_000)
        finally:
            raw.terminate()
            raw.wait()
        print(
            f"raw echo (floor): {raw_rt:,.0f} round trips/s (1 conn), {raw_cpu:.1f} us CPU "
            f"per round trip ({raw_busy_cpu:.1f} us with 8 connections busy); {raw_ow:,.0f} "
            "frames/s one way"
        )

        echo_sock = tmp / "echo" / "rt.sock"
        echo_sock.parent.mkdir()
        proc = start_runtime("examples.handlers.util:echo", echo_sock)
        try:
            one, cpu = await rt_round_trips(str(echo_sock), args.seconds, proc.pid)
            many, busy_cpu = await rt_concurrent(str(echo_sock), args.seconds, proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        print(
            f"runtime echo: {one:,.0f} envelopes/s (1 conn) = {one / raw_rt:.2f}x raw "
            f"[target >= 0.8x]; {many:,.0f} envelopes/s (8 conns) = {many / raw_rt:.2f}x raw"
        )
        print(
            f"runtime CPU per trivial async envelope, 8 connections busy: {busy_cpu:.1f} us = "
            f"{busy_cpu / raw_busy_cpu:.2f}x the raw echo's {raw_busy_cpu:.1f} us "
            "[target <= 25 us]; "
            f"one connection, one envelope at a time: {cpu:.1f} us = {cpu / raw_cpu:.2f}x the raw "
            f"echo's {raw_cpu:.1f} us"
        )
        if args.upstream:
            up_sock = tmp / "upstream"
            up = upstream_runtime.start(args.upstream, "examples.handlers.util.echo", up_sock, ROOT)
            try:
                path, pid = str(up_sock / "rt.sock"), up.pid
                up_one, up_cpu = await upstream_runtime.cpu_per_envelope(
                    path, args.seconds, lambda: cpu_seconds(pid), 1
                )
                # 4: its listen backlog is 5, and it serves one request at a time anyway
                _, up_busy = await upstream_runtime.cpu_per_envelope(
                    path, args.seconds, lambda: cpu_seconds(pid), 4
                )
            finally:
                up.terminate()
                up.wait()
            print(
                f"upstream runtime ({args.upstream}): {up_one:,.0f} envelopes/s (1 conn); CPU per "
                f"trivial async envelope {up_busy:.1f} us with 4 clients busy = "
                f"{up_busy / busy_cpu:.1f}x ours [target >= 10x], {up_cpu:.1f} us one at a time "
                f"= {up_cpu / cpu:.1f}x ours"
            )
        # Its own event loop, so its own thread (this loop sits idle in the meantime).
        await asyncio.to_thread(print_core, args.core)

        fly_sock = tmp / "fly" / "rt.sock"
        fly_sock.parent.mkdir()
        proc = start_runtime("examples.handlers.util:fly_flood", fly_sock)
        try:
            rate, p50, p99 = await rt_flies(str(fly_sock), args.flies)
            print(
                f"runtime FLY (async generator): {rate:,.0f} frames/s = {rate / raw_ow:.2f}x raw "
                f"one way [target >= 300,000]; yield-to-read p50 {p50:.0f} us, p99 {p99:.0f} us "
                "[target p99 <= 200 us]"
            )
            stream_n = max(100_000, int(rate * 1.2))  # > 1 s of FLYs
            stream_s, q50, q99, qmax = await rt_latency_during_stream(str(fly_sock), stream_n)
            print(
                f"trivial invocation while another connection streams {stream_n:,} FLYs "
                f"({stream_s:.2f} s): p50 {q50:.2f} ms, p99 {q99:.2f} ms, max {qmax:.2f} ms "
                "[target <= 5 ms]"
            )
        finally:
            proc.terminate()
            proc.wait()

        gen_sock = tmp / "gen" / "rt.sock"
        gen_sock.parent.mkdir()
        proc = start_runtime("bench.runtime_bench:sync_fly_flood", gen_sock)
        try:
            g_rate, g50, g99 = await rt_flies(str(gen_sock), args.flies)
            print(
                f"runtime FLY (sync generator): {g_rate:,.0f} frames/s = {g_rate / raw_ow:.2f}x "
                f"raw one way, {g_rate / rate:.2f}x the async generator [target >= 100,000]; "
                f"yield-to-read p50 {g50:.0f} us, p99 {g99:.0f} us"
            )
        finally:
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--flies", type=int, default=100_000)
    p.add_argument("--core", type=int, default=20_000, help="envelopes of the in-process core")
    p.add_argument("--core-only", action="store_true", help="only the in-process core measure")
    p.add_argument("--quick", action="store_true", help="1 s per measure, 20,000 FLYs")
    p.add_argument(
        "--upstream",
        type=Path,
        metavar="FILE",
        help="a copy of upstream Asya's src/asya-runtime/asya_runtime.py, run as a peer",
    )
    p.add_argument("--quick-client", metavar="SOCKET", help=argparse.SUPPRESS)
    p.add_argument("--raw-server", metavar="SOCKET", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.raw_server:
        raw_server_main(args.raw_server)
        return
    if args.quick:
        args.seconds, args.flies, args.core = 1.0, 20_000, 5_000
    if args.quick_client:
        quick_client(args.quick_client, args.seconds)
        return
    print(f"python {sys.version.split()[0]}, msgspec {msgspec.__version__}, {os.cpu_count()} cpus")
    if args.core_only:
        print_core(args.core)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
