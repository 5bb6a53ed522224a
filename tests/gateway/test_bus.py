"""The replicas' event bus on a real PostgreSQL: batched publishing keeps every task's order
and the ids every replica agrees on, big messages travel by reference, no publisher waits on a
bus that is not running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import msgspec
import pytest

from asya_gateway.bus import INLINE_MAX, LocalBus, Message, PgBus

from .stores import database_url

pytestmark = pytest.mark.anyio


def _fly(task: str, i: int, text: str = "") -> Message:
    return Message(task=task, fly=msgspec.Raw(msgspec.json.encode({"i": i, "text": text})), seq=i)


class Heard:
    """What one replica's listener delivered, in order."""

    def __init__(self) -> None:
        self.got: list[tuple[Message, int | None]] = []
        self.lost = 0

    def deliver(self, msg: Message, eid: int | None) -> None:
        self.got.append((msg, eid))

    def on_lost(self) -> None:
        self.lost += 1

    def of(self, task: str) -> list[tuple[int, int | None]]:
        return [(msgspec.json.decode(m.fly)["i"], eid) for m, eid in self.got if m.task == task]


@asynccontextmanager
async def running(bus: PgBus, heard: Heard) -> AsyncIterator[None]:
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bus.run, heard.deliver, heard.on_lost, started.set)
        with anyio.fail_after(20):
            await started.wait()
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    await bus.aclose()


async def _until(cond: Callable[[], bool], what: str) -> None:
    with anyio.fail_after(30):
        while not cond():  # noqa: ASYNC110 (the listener's deliveries have no event of their own)
            await anyio.sleep(0.01)


async def test_concurrent_publishers_share_transactions_and_keep_each_tasks_order(
    tmp_path: Path,
) -> None:
    tasks, per_task = 40, 25
    async with database_url("postgres", str(tmp_path)) as url:
        a, b = PgBus(url), PgBus(url)
        heard_a, heard_b = Heard(), Heard()
        async with running(a, heard_a), running(b, heard_b):

            async def publisher(t: int) -> None:
                for i in range(per_task):  # one at a time, as one sidecar's FLYs arrive
                    await a.publish(_fly(f"t{t}", i))

            async with anyio.create_task_group() as tg:
                for t in range(tasks):
                    tg.start_soon(publisher, t)
            total = tasks * per_task
            await _until(lambda: len(heard_b.got) >= total, "replica B hearing every FLY")
            await _until(lambda: len(heard_a.got) >= total, "replica A hearing its own FLYs")
        # Batched: far fewer transactions than messages (one per message before).
        assert a.transactions < total / 4, a.transactions
        for t in range(tasks):
            on_b = heard_b.of(f"t{t}")
            assert [i for i, _ in on_b] == list(range(per_task))  # in publish order
            ids = [eid for _, eid in on_b]
            assert ids == sorted(ids) and len(set(ids)) == per_task  # growing, distinct
            assert on_b == heard_a.of(f"t{t}")  # both replicas: same order, same ids
        assert heard_a.lost == heard_b.lost == 0


async def test_a_batch_mixing_small_and_big_messages_arrives_whole_and_in_order(
    tmp_path: Path,
) -> None:
    big = "x" * (INLINE_MAX + 100)  # over NOTIFY's limit: sent as a reference to a row
    async with database_url("postgres", str(tmp_path)) as url:
        a, b = PgBus(url), PgBus(url)
        heard = Heard()
        async with running(a, Heard()), running(b, heard):
            await a.publish_many([_fly("t", 0), _fly("t", 1, big), _fly("t", 2)])
            await _until(lambda: len(heard.got) >= 3, "three messages")
        assert [i for i, _ in heard.of("t")] == [0, 1, 2]
        assert msgspec.json.decode(heard.got[1][0].fly)["text"] == big


async def test_publishing_without_a_running_bus_sends_directly(tmp_path: Path) -> None:
    # A gateway publishes before its bus task started (or after it stopped): no one to hand
    # the batch to, so the publisher sends it itself rather than wait forever.
    async with database_url("postgres", str(tmp_path)) as url:
        idle, listener = PgBus(url), PgBus(url)
        heard = Heard()
        async with running(listener, heard):
            with anyio.fail_after(10):
                await idle.publish_many([_fly("t", 0), _fly("t", 1)])
            await _until(lambda: len(heard.got) >= 2, "both messages")
        await idle.aclose()
        assert [i for i, _ in heard.of("t")] == [0, 1]


async def test_a_local_burst_leaves_the_streams_room_to_write() -> None:
    # One POST of 1,000 FLYs: a stream must get its first events before the last is delivered
    # (else the first token waits for the whole burst).
    bus, heard = LocalBus(), Heard()
    seen_midway: list[int] = []
    async with anyio.create_task_group() as tg:
        started = anyio.Event()
        tg.start_soon(bus.run, heard.deliver, heard.on_lost, started.set)
        await started.wait()
        done = anyio.Event()

        async def stream() -> None:  # what an SSE writer does: run whenever it is let
            while not done.is_set():
                seen_midway.append(len(heard.got))
                await anyio.lowlevel.checkpoint()

        tg.start_soon(stream)
        await anyio.lowlevel.checkpoint()
        await bus.publish_many([_fly("t", i) for i in range(1000)])
        done.set()
        tg.cancel_scope.cancel()
    assert [i for i, _ in heard.of("t")] == list(range(1000))  # all, in order
    assert any(0 < n < 1000 for n in seen_midway), seen_midway[:5]


async def test_replicas_starting_together_on_a_fresh_database_all_open(tmp_path: Path) -> None:
    # `asya dev --gateways 2` starts both replicas at once on a new database: their schema
    # statements (the store's and the bus's) must not race each other.
    from asya_gateway.store import open_store

    async with database_url("postgres", str(tmp_path)) as url:
        buses = [PgBus(url) for _ in range(4)]
        stores = [open_store(url) for _ in range(4)]
        failures: list[BaseException] = []

        async def start(opener: Callable[[], Awaitable[None]]) -> None:
            try:
                await opener()
            except Exception as exc:  # collected: every opener must succeed
                failures.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for bus in buses:
                    tg.start_soon(start, bus.open)
                for store in stores:
                    tg.start_soon(start, store.open)
        try:
            assert failures == []
        finally:
            for bus in buses:
                await bus.aclose()
            for store in stores:
                await store.aclose()


async def test_a_bus_whose_database_is_not_there_yet_starts_once_it_is(tmp_path: Path) -> None:
    # A gateway started before its database (or racing another replica's first start) must
    # begin serving once the database answers, not wait forever for a "started" that was due
    # on the first attempt only.
    import uuid

    import asyncpg

    from .stores import _admin_url

    admin = _admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL: set DATABASE_URL")
    name = f"asya_t_{uuid.uuid4().hex[:12]}"
    bus = PgBus(f"{admin.rsplit('/', 1)[0]}/{name}")
    started = anyio.Event()
    conn = await asyncpg.connect(admin)
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.run, Heard().deliver, Heard().on_lost, started.set)
                while bus.failed_connects == 0:  # noqa: ASYNC110 (no event for a failed connect)
                    await anyio.sleep(0.01)
                assert not started.is_set()
                await conn.execute(f"CREATE DATABASE {name}")
                await started.wait()
                assert bus.reconnects == 0  # not a reconnect: the first LISTEN
                tg.cancel_scope.cancel()
        await bus.aclose()
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
