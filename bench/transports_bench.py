"""Queue transport benchmark: throughput and single-message hop latency per transport.

    .venv/bin/python bench/transports_bench.py [--quick] [--transports sqlite,rabbitmq,sqs]

Baselines measured in the same run: an in-process anyio memory-stream hop, a raw SQLite
insert+delete loop (same pragmas as the transport, no leases, no threads, no wake-ups), and
raw aio-pika on the same broker: persistent publishes awaiting each confirm, the same with
confirms pipelined (many in flight on one channel) while a consumer acks, the floor the
RabbitMQ transport's send+receive+ack is compared with.
Hop latency = a consumer already waiting in `receive` until it holds the message (send
included), one message at a time; "hop between 2 processes" is a ping-pong between two
processes (half the round trip; the far side forwards with `send_then_ack`, as a sidecar
does). "loop wake-up lateness" is how late a 1 ms timer fires: on a shared machine it bounds
what any p99 here can mean.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import anyio.lowlevel

from asya_mesh.transports import Transport, TransportConfig, open_transport

ROOT = str(Path(__file__).resolve().parent.parent)

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def config(kind: str, db: str) -> TransportConfig:
    return TransportConfig(
        kind=kind,
        namespace="bench",
        sqlite_path=db,
        rabbitmq_url=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        sqs_endpoint=os.environ.get("SQS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        sqs_wait_time_seconds=1,
    )


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def report(name: str, lat: list[float] | None = None, rate: float | None = None) -> None:
    parts = [f"{name:<34}"]
    if rate is not None:
        parts.append(f"{rate:>10.0f} msg/s")
    if lat:
        parts.append(f"hop p50 {pct(lat, 0.5):7.3f} ms  p99 {pct(lat, 0.99):7.3f} ms")
    print("  ".join(parts), flush=True)


async def baseline_memory(n: int) -> tuple[list[float], float]:
    send, recv = anyio.create_memory_object_stream[float](1)  # hop, as a queue of one
    lat: list[float] = []
    async with send, recv:
        for _ in range(n):
            async with anyio.create_task_group() as tg:

                async def one() -> None:
                    sent = await recv.receive()
                    lat.append(time.perf_counter() - sent)

                tg.start_soon(one)
                await anyio.lowlevel.checkpoint()
                await send.send(time.perf_counter())
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:

            async def drain() -> None:
                for _ in range(n * 10):
                    await recv.receive()

            tg.start_soon(drain)
            for _ in range(n * 10):
                await send.send(0.0)
        rate = n * 10 / (time.perf_counter() - start)
    return lat, rate


def baseline_sqlite(n: int, db: str) -> float:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body BLOB)")
    start = time.perf_counter()
    for _ in range(n):
        cur = con.execute("INSERT INTO raw (body) VALUES (?)", (b"x" * 200,))
        con.execute("DELETE FROM raw WHERE id = ?", (cur.lastrowid,))
    rate = n / (time.perf_counter() - start)
    con.close()
    return rate


async def hop_latency(producer: Transport, consumer: Transport, queue: str, n: int) -> list[float]:
    lat: list[float] = []
    for _ in range(n):
        got = anyio.Event()

        async def one(got: anyio.Event = got) -> None:
            d = await consumer.receive(queue, wait=30)
            assert d is not None
            lat.append(time.perf_counter() - float(d.body))
            got.set()
            await d.ack()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            await anyio.sleep(0.002)  # let the consumer go idle in receive
            await producer.send(queue, repr(time.perf_counter()).encode())
            await got.wait()
    return lat


async def throughput(
    producer: Transport, consumer: Transport, queue: str, n: int, *, tasks: int = 8
) -> float:
    """`tasks` senders and `tasks` consumers at once: a sidecar with ASYA_CONCURRENCY=`tasks`
    consuming what another `tasks`-wide one forwards (each send awaits its own confirm)."""
    body = b"x" * 200
    per = n // tasks
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            for _ in range(per):
                d = await consumer.receive(queue, wait=30)
                assert d is not None
                await d.ack()

        async def produce() -> None:
            for _ in range(per):
                await producer.send(queue, body)

        for _ in range(tasks):
            tg.start_soon(consume)
            tg.start_soon(produce)
    return per * tasks / (time.perf_counter() - start)


async def raw_rabbitmq(url: str, n: int, *, window: int) -> float:
    """Raw aio-pika floor: persistent publishes with `window` confirms in flight on one channel
    (1 = await each), while a consumer on its own connection acks each (prefetch `window`)."""
    import aio_pika

    queue = f"bench-raw-{uuid.uuid4().hex[:8]}"
    pub = await aio_pika.connect(url)
    sub = await aio_pika.connect(url)
    try:
        pch = await pub.channel(publisher_confirms=True)
        sch = await sub.channel()
        await sch.set_qos(prefetch_count=max(window, 8))
        q = await sch.declare_queue(queue, durable=True)
        got = anyio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count == n:
                got.set()

        start = time.perf_counter()
        tag = await q.consume(on_message)
        exchange = pch.default_exchange
        limit = anyio.Semaphore(window)

        async def publish() -> None:
            try:
                message = aio_pika.Message(
                    b"x" * 200, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                await exchange.publish(message, queue)
            finally:
                limit.release()

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                await limit.acquire()
                tg.start_soon(publish)
        await got.wait()
        rate = n / (time.perf_counter() - start)
        await q.cancel(tag)
        await q.delete()
    finally:
        await pub.close()
        await sub.close()
    return rate


async def throughput_batched(transport: Transport, queue: str, n: int) -> float:
    start = time.perf_counter()
    for i in range(0, n, 50):
        await transport.send_many([(queue, b"x" * 200)] * min(50, n - i))
    for _ in range(n):
        d = await transport.receive(queue, wait=30)
        assert d is not None
        await d.ack()
    return n / (time.perf_counter() - start)


PONG = """
import sys, anyio
sys.path.insert(0, {root!r})
from asya_mesh.transports import TransportConfig, open_transport
async def main():
    t = await open_transport(TransportConfig(sqlite_path={db!r}))
    print("ready", flush=True)
    while (d := await t.receive("ping", wait=10)) is not None:
        await t.send_then_ack([("pong", d.body)], d)  # as a sidecar forwards a result
    await t.aclose()
anyio.run(main)
"""


def start_pong(db: str) -> subprocess.Popen[str]:
    code = PONG.format(root=ROOT, db=db)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


async def xproc_hop(db: str, n: int) -> list[float]:
    proc = start_pong(db)
    t = await open_transport(TransportConfig(sqlite_path=db))
    lat: list[float] = []
    try:
        assert proc.stdout is not None
        await anyio.to_thread.run_sync(proc.stdout.readline)
        for _ in range(n):
            start = time.perf_counter()
            await t.send("ping", b"x")
            d = await t.receive("pong", wait=10)
            assert d is not None
            lat.append((time.perf_counter() - start) / 2)
            await d.ack()
            await anyio.sleep(0.002)  # both sides idle again before the next ping
    finally:
        proc.kill()
        proc.wait()
        await t.aclose()
    return lat


async def main(args: argparse.Namespace) -> None:
    n_hop = 100 if args.quick else 1000
    n_rate = 400 if args.quick else 4000
    tmp = tempfile.mkdtemp(prefix="asya-bench-", dir="/tmp")
    print(f"hops: {n_hop}, throughput messages: {n_rate} (200-byte bodies)")
    jitter = []
    for _ in range(n_hop):  # how late the loop wakes for a timer: the machine's own noise
        start = time.perf_counter()
        await anyio.sleep(0.001)
        jitter.append(time.perf_counter() - start - 0.001)
    report("baseline loop wake-up lateness", jitter)
    lat, rate = await baseline_memory(n_hop)
    report("baseline anyio memory stream", lat, rate)
    raw_rate = baseline_sqlite(n_rate, f"{tmp}/raw.db")
    report("baseline raw sqlite insert+delete", rate=raw_rate)
    for kind in args.transports.split(","):
        n_k_rate = n_rate if kind != "sqs" else n_rate // 8
        n_k_hop = n_hop if kind != "sqs" else max(n_hop // 5, 20)
        try:
            producer = await open_transport(config(kind, f"{tmp}/q.db"), concurrency=8)
            consumer = await open_transport(config(kind, f"{tmp}/q.db"), concurrency=8)
        except Exception as exc:
            print(f"{kind:<34}  unavailable: {exc!r}")
            continue
        try:
            queue = f"asya-bench-{uuid.uuid4().hex[:8]}"
            await producer.send(queue, b"warm-up")
            d = await consumer.receive(queue, wait=10)
            assert d is not None
            await d.ack()
            lat = await hop_latency(producer, consumer, queue, n_k_hop)
            if kind == "rabbitmq":
                url = config(kind, "").rabbitmq_url
                each = await raw_rabbitmq(url, n_k_rate // 4, window=1)
                report("floor raw aio-pika, confirm each", rate=each)
                floor = await raw_rabbitmq(url, n_k_rate, window=64)
                report("floor raw aio-pika, pipelined", rate=floor)
            rate = await throughput(producer, consumer, queue, n_k_rate)
            report(f"{kind} send+receive+ack (8 tasks)", lat, rate)
            if kind == "rabbitmq":
                print(f"  ratio rabbitmq/raw pipelined: {rate / floor:.2f}", flush=True)
                print(f"  ratio rabbitmq/raw confirm each: {rate / each:.2f}", flush=True)
            if kind == "sqlite":
                report(
                    "sqlite send_many(50)+receive+ack",
                    rate=await throughput_batched(producer, queue, n_k_rate),
                )
                report("sqlite hop between 2 processes", await xproc_hop(f"{tmp}/x.db", n_hop))
                print(f"  ratio sqlite/raw-sqlite throughput: {rate / raw_rate:.2f}")
        finally:
            await producer.aclose()
            await consumer.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, under a minute")
    parser.add_argument("--transports", default="sqlite,rabbitmq,sqs")
    anyio.run(main, parser.parse_args())
