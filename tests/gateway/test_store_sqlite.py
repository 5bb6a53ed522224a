"""The SQLite task store's two connections: the event loop's never waits, the thread's does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import msgspec
import pytest

from asya_gateway.state import TaskRecord
from asya_gateway.store import open_store
from asya_gateway.store.sqlite import SqliteStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def rec(tid: str, **kw: object) -> TaskRecord:
    return TaskRecord(
        **({"id": tid, "route": ["a", "b"], "created_at": 1.5, "updated_at": 1.5} | kw)
    )


async def test_a_file_locked_elsewhere_waits_in_the_thread_and_the_loop_keeps_running(
    short_tmp: Path,
) -> None:
    path = short_tmp / "gw.db"
    store = open_store(f"sqlite://{path}")
    assert isinstance(store, SqliteStore)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)  # another process, as SQLite sees it
    try:
        await store.insert(rec("t0"))
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        done = anyio.Event()

        async def write() -> None:
            await store.insert(rec("t1"))
            await store.update("t0", lambda r: msgspec.structs.replace(r, progress=0.5))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            with anyio.fail_after(10):
                # The insert declined on the loop and waits in the thread; the loop is free
                # (this polling runs on it meanwhile). Nothing signals "a thread is waiting".
                while store._limiter.borrowed_tokens == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.005)  # polling a condition, bounded by fail_after
                assert not done.is_set()
                assert await store.get("t0") == rec("t0")  # reads do not wait for the lock
                other.execute("COMMIT")
                await done.wait()
        assert await store.get("t1") == rec("t1")
        got = await store.get("t0")
        assert got is not None and got.progress == 0.5
    finally:
        other.close()
        await store.aclose()


async def test_loop_writes_are_checkpointed_so_the_wal_stays_bounded(short_tmp: Path) -> None:
    path = short_tmp / "gw.db"
    store = open_store(f"sqlite://{path}")
    await store.open()
    try:
        payload = {"text": "x" * 3000}  # about a page per write
        for i in range(3000):
            await store.insert(rec(f"t{i}", payload=payload))
        # Without checkpoints the WAL would hold every page written (~60 MB): five per insert.
        wal = (await anyio.Path(f"{path}-wal").stat()).st_size
        assert wal < 6_000_000, wal
        assert await store.get("t2999") == rec("t2999", payload=payload)
    finally:
        await store.aclose()
