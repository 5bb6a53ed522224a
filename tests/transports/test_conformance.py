"""One conformance suite for every transport (memory, sqlite, rabbitmq, sqs), like trio's
check_one_way_stream.

Broker-backed cases skip locally when the broker is down and fail under CI (see conftest).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from asya_mesh.transports import Delivery, Transport, open_transport
from asya_mesh.transports.errors import MessageTooLarge, QueueMissing, TransportError

from .conftest import ROOT_DIR, OpenTransport, config_for
from .own_broker import OwnRabbit, can_run_own_rabbit

pytestmark = pytest.mark.anyio


async def receive_one(t: Transport, queue: str, wait: float = 10.0) -> Delivery:
    d = await t.receive(queue, wait=wait)
    assert d is not None, f"nothing arrived on {queue} within {wait}s"
    return d


async def test_send_receive_ack(transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        await transport.send(queue, b'{"id": "1"}')
        d = await receive_one(transport, queue)
        assert d.body == b'{"id": "1"}'
        assert d.attempt == 1
        assert d.message_id
        await d.ack()
        assert await transport.receive(queue, wait=0.5) is None


async def test_binary_and_empty_bodies_round_trip(transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        for body in (b"", b"\x00\xff\x01 not utf-8 \xc3", "ünïcødé ✓".encode()):
            await transport.send(queue, body)
            d = await receive_one(transport, queue)
            assert d.body == body
            await d.ack()


async def test_order_is_kept_for_one_consumer(kind: str, transport: Transport, queue: str) -> None:
    if kind == "sqs":
        pytest.skip("SQS standard queues are not ordered (documented)")
    with anyio.fail_after(30):
        await transport.send_many([(queue, f"m{i}".encode()) for i in range(20)])
        got = []
        for _ in range(20):
            d = await receive_one(transport, queue)
            got.append(d.body.decode())
            await d.ack()
        assert got == [f"m{i}" for i in range(20)]


async def test_send_many_fans_out_to_several_queues(transport: Transport, queue: str) -> None:
    other = queue + "-b"
    with anyio.fail_after(30):
        await transport.send_many([(queue, f"a{i}".encode()) for i in range(25)] + [(other, b"b")])
        d = await receive_one(transport, other)
        assert d.body == b"b"
        await d.ack()
        got = set()
        for _ in range(25):
            d = await receive_one(transport, queue)
            got.add(d.body)
            await d.ack()
        assert got == {f"a{i}".encode() for i in range(25)}
        assert await transport.receive(queue, wait=0.3) is None


async def test_send_then_ack_forwards_outputs_and_removes_the_input(
    transport: Transport, queue: str
) -> None:
    out = queue + "-out"
    with anyio.fail_after(30):
        await transport.send(queue, b"input")
        d = await receive_one(transport, queue)
        await transport.send_then_ack([(out, b"out-1"), (out, b"out-2")], d)
        got = {(await receive_one(transport, out)).body for _ in range(2)}
        assert got == {b"out-1", b"out-2"}
        assert await transport.receive(queue, wait=0.5) is None


async def test_requeue_redelivers_the_same_message_with_next_attempt(
    transport: Transport, queue: str
) -> None:
    with anyio.fail_after(30):
        await transport.send(queue, b"again")
        first = await receive_one(transport, queue)
        await first.requeue()
        second = await receive_one(transport, queue)
        assert (second.body, second.attempt) == (b"again", 2)
        assert second.message_id == first.message_id
        await second.requeue()
        third = await receive_one(transport, queue)
        assert third.attempt == 3
        await third.ack()
        assert await transport.receive(queue, wait=0.3) is None


async def test_delayed_send_really_waits_then_arrives(transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        sent = time.monotonic()
        await transport.send(queue, b"later", delay=2.0)
        assert await transport.receive(queue, wait=0.5) is None
        d = await receive_one(transport, queue, wait=15)
        assert d.body == b"later"
        assert time.monotonic() - sent >= 1.9
        await d.ack()


async def test_requeue_with_delay_really_waits(transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        await transport.send(queue, b"retry me")
        d = await receive_one(transport, queue)
        requeued = time.monotonic()
        await d.requeue(delay=2.0)
        assert await transport.receive(queue, wait=0.5) is None
        again = await receive_one(transport, queue, wait=15)
        assert time.monotonic() - requeued >= 1.9
        assert (again.body, again.attempt) == (b"retry me", 2)
        await again.ack()


async def test_extend_keeps_the_lease(open_one: OpenTransport, queue: str) -> None:
    holder = await open_one(lease_seconds=1)
    other = await open_one(lease_seconds=1)
    with anyio.fail_after(30):
        await holder.send(queue, b"long job")
        d = await receive_one(holder, queue)
        for _ in range(3):  # as the sidecar does while a long handler runs
            await d.extend(2)
            assert await other.receive(queue, wait=0.8) is None
        await d.ack()
        assert await other.receive(queue, wait=2.5) is None


async def test_lease_lapses_when_not_extended(
    kind: str, open_one: OpenTransport, queue: str
) -> None:
    if kind == "rabbitmq":
        pytest.skip("RabbitMQ has no lease timeout: only a disconnect returns the message")
    holder = await open_one(lease_seconds=1)
    other = await open_one(lease_seconds=1)
    with anyio.fail_after(30):
        await holder.send(queue, b"forgotten")
        await receive_one(holder, queue)
        d = await receive_one(other, queue, wait=10)
        assert (d.body, d.attempt) == (b"forgotten", 2)
        await d.ack()


@contextmanager
def worker_process(spec: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """`tests.transports.worker_proc` in a child process, killed at exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.transports.worker_proc", json.dumps(spec)],
        cwd=ROOT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)


@pytest.mark.e2e
async def test_redelivery_after_the_consumer_dies_without_acking(
    kind: str, open_one: OpenTransport, sqlite_path: Path, queue: str
) -> None:
    """SIGKILL a consumer holding a message: sqlite's lease lapses, RabbitMQ sees the
    connection drop, SQS's visibility timeout ends; the message comes back, attempt 2."""
    if kind == "memory":
        pytest.skip("the memory transport is in-process: no other process can hold a message")
    transport = await open_one(lease_seconds=1)
    config = config_for(kind, sqlite_path, lease_seconds=1)
    spec = {"config": _fields(config), "queue": queue, "mode": "hold"}
    with anyio.fail_after(60), worker_process(spec) as proc:
        await transport.send(queue, b"crash test")
        assert (await read_line(proc)).strip() == "got 1"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        d = await receive_one(transport, queue, wait=20)
        assert (d.body, d.attempt) == (b"crash test", 2)
        await d.ack()


async def test_concurrent_consumers_never_hold_the_same_message(
    open_one: OpenTransport, queue: str
) -> None:
    producer = await open_one()
    consumers = [await open_one() for _ in range(3)]
    total = 30
    await producer.send_many([(queue, f"job-{i}".encode()) for i in range(total)])
    held: set[bytes] = set()
    done: list[bytes] = []
    all_done = anyio.Event()

    async def consume(t: Transport) -> None:
        while not all_done.is_set():
            d = await t.receive(queue, wait=0.5)
            if d is None:
                continue
            assert d.body not in held, f"{d.body!r} leased twice at once"
            held.add(d.body)
            await anyio.sleep(0.01)  # hold it while others are receiving
            held.discard(d.body)
            await d.ack()
            done.append(d.body)
            if len(done) == total:
                all_done.set()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for t in consumers:
                for _ in range(3):
                    tg.start_soon(consume, t)
    assert sorted(done) == sorted(f"job-{i}".encode() for i in range(total))


async def test_cancelled_receive_loses_nothing(open_one: OpenTransport, queue: str) -> None:
    """A receive cancelled mid-wait may still take a message on SQS (the long poll runs on at
    the server): then it comes back after the visibility timeout. Never lost."""
    transport = await open_one(lease_seconds=2)
    with anyio.fail_after(30):
        with anyio.move_on_after(0.3):
            await transport.receive(queue, wait=10)
        await transport.send(queue, b"after cancel")
        d = await receive_one(transport, queue, wait=15)
        assert d.body == b"after cancel"
        await d.ack()


async def test_largest_message_round_trips_and_one_byte_more_is_refused(
    transport: Transport, queue: str
) -> None:
    limit = transport.max_message_bytes
    body = b"a" * limit
    with anyio.fail_after(60):
        await transport.send(queue, body)
        d = await receive_one(transport, queue, wait=20)
        assert len(d.body) == limit and d.body == body
        await d.ack()
        with pytest.raises(MessageTooLarge, match=str(limit)):
            await transport.send(queue, body + b"a")
        with pytest.raises(MessageTooLarge):
            await transport.send_many([(queue, b"ok"), (queue, body + b"a")])


async def test_depths_counts_waiting_messages(kind: str, transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        await transport.send_many([(queue, b"1"), (queue, b"2")])
        assert (await transport.depths())[queue] == 2
        for _ in range(2):
            await (await receive_one(transport, queue)).ack()
        assert (await transport.depths())[queue] == 0


async def test_a_must_exist_send_refuses_an_undeclared_queue_naming_it(
    transport: Transport, queue: str
) -> None:
    with anyio.fail_after(30):
        assert not await transport.exists(queue)
        with pytest.raises(QueueMissing, match=queue):
            await transport.send(queue, b"lost?", must_exist=True)
        with pytest.raises(QueueMissing, match=queue):
            await transport.send(queue, b"lost?", delay=1.0, must_exist=True)
        assert not await transport.exists(queue), "a refused send must not create the queue"
        await transport.declare(queue)
        await transport.declare(queue)  # idempotent
        assert await transport.exists(queue)
        await transport.send(queue, b"declared", must_exist=True)
        d = await receive_one(transport, queue)
        assert d.body == b"declared"
        await d.ack()
        assert await transport.receive(queue, wait=0.3) is None, "a refused send sent something"


async def test_a_plain_send_still_creates_its_queue(transport: Transport, queue: str) -> None:
    with anyio.fail_after(30):
        await transport.send(queue, b"before any consumer")
        assert await transport.exists(queue)
        d = await receive_one(transport, queue)
        assert d.body == b"before any consumer"
        await d.ack()


async def test_a_receive_declares_its_queue_for_every_sender(
    open_one: OpenTransport, queue: str
) -> None:
    consumer = await open_one()
    sender = await open_one()  # another connection, as a sidecar upstream would be
    with anyio.fail_after(30):
        assert await consumer.receive(queue, wait=0) is None
        assert await sender.exists(queue)
        await sender.send(queue, b"to a consumer", must_exist=True)
        d = await receive_one(consumer, queue)
        assert d.body == b"to a consumer"
        await d.ack()


async def test_must_exist_send_many_and_send_then_ack_send_nothing_when_one_is_missing(
    transport: Transport, queue: str
) -> None:
    present, absent = queue + "-here", queue + "-nowhere"
    with anyio.fail_after(30):
        await transport.declare(present)
        with pytest.raises(QueueMissing, match=absent):
            await transport.send_many([(present, b"a"), (absent, b"b")], must_exist=True)
        await transport.send(queue, b"input")
        d = await receive_one(transport, queue)
        with pytest.raises(QueueMissing, match=absent):
            await transport.send_then_ack([(present, b"a"), (absent, b"b")], d, must_exist=True)
        assert await transport.receive(present, wait=0.5) is None, "part of a refused batch sent"
        await d.requeue()  # still ours: the refused send_then_ack did not ack it
        again = await receive_one(transport, queue)
        await transport.send_then_ack([(present, b"out")], again, must_exist=True)
        assert (await receive_one(transport, present)).body == b"out"
        assert await transport.receive(queue, wait=0.3) is None


def _fields(config: Any) -> dict[str, Any]:
    return msgspec.structs.asdict(config)


@pytest.mark.e2e
async def test_many_processes_share_one_sqlite_file(sqlite_path: Path, queue: str) -> None:
    """Two producer and three consumer processes on one file: every message consumed once."""
    config = _fields(config_for("sqlite", sqlite_path))
    per_producer = 60
    producers = [
        {"config": config, "queue": queue, "mode": "produce", "count": per_producer, "tag": tag}
        for tag in ("p0", "p1")
    ]
    consumer = {"config": config, "queue": queue, "mode": "drain", "idle": 3.0}
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(worker_process(spec)) for spec in [*producers, *[consumer] * 3]
        ]

        def collect() -> list[str]:
            outputs = []
            for proc in procs:
                out, _ = proc.communicate(timeout=90)
                assert proc.returncode == 0, f"worker exited {proc.returncode}"
                outputs.extend(out.split())
            return outputs

        with anyio.fail_after(100):
            lines = await anyio.to_thread.run_sync(collect, abandon_on_cancel=True)
    consumed = [line for line in lines if line != "sent"]
    assert lines.count("sent") == 2
    expected = sorted(f"{tag}-{i}" for tag in ("p0", "p1") for i in range(per_producer))
    assert sorted(consumed) == expected, "lost or duplicated messages"


@pytest.fixture
def own_rabbit() -> Iterator[OwnRabbit]:
    """A broker of this test's own: the shared one is never stopped."""
    if not can_run_own_rabbit():
        pytest.skip("needs services.sh and rabbitmq-server to run a broker of the test's own")
    rabbit = OwnRabbit()
    try:
        anyio.run(rabbit.start)
        yield rabbit
    finally:
        rabbit.clean()


@pytest.mark.slow
@pytest.mark.broker
async def test_rabbitmq_broker_restart_while_consuming(
    sqlite_path: Path, queue: str, own_rabbit: OwnRabbit
) -> None:
    """Stop and start the broker under a consumer: nothing queued is lost, the unacked message
    comes back (attempt 2), sends and receives resume on the robust connection by themselves."""
    config = config_for("rabbitmq", sqlite_path, rabbitmq_url=own_rabbit.url)
    transport = await open_transport(config, concurrency=4)
    idle_queue = queue + "-idle"
    waited: list[bytes] = []
    try:
        with anyio.fail_after(180):
            await transport.send(queue, b"in flight")
            held = await receive_one(transport, queue)
            await transport.send(queue, b"queued")

            async with anyio.create_task_group() as tg:

                async def wait_across_the_restart() -> None:
                    waited.append((await receive_one(transport, idle_queue, wait=120)).body)

                tg.start_soon(wait_across_the_restart)  # a receive in flight during the outage
                try:
                    await own_rabbit.stop()
                finally:
                    await own_rabbit.start()
                with pytest.raises(TransportError):
                    await held.ack()  # its channel died with the broker
                await transport.send(queue, b"after restart")  # retried until reconnected
                await transport.send(idle_queue, b"wake up")
            assert waited == [b"wake up"]
            got = {}
            for _ in range(3):
                d = await receive_one(transport, queue, wait=60)
                got[d.body] = d.attempt
                await d.ack()
            assert got.keys() == {b"in flight", b"queued", b"after restart"}
            assert got[b"in flight"] == 2
    finally:
        await transport.aclose()
