"""One conformance suite for every task store (SQLite file, real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from asya_gateway.state import TaskRecord, cancel
from asya_gateway.store import SchemaTooNew, StoreError, TaskExists, TaskStore, open_store

from .stores import BACKENDS, database_url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def rec(tid: str, **kw: object) -> TaskRecord:
    return TaskRecord(
        **({"id": tid, "route": ["a", "b"], "created_at": 1.5, "updated_at": 1.5} | kw)
    )


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, short_tmp: Path) -> object:
    async with database_url(request.param, str(short_tmp)) as u:
        yield u


async def opened(url: str) -> TaskStore:
    store = open_store(url)
    await store.open()
    return store


async def test_insert_get_round_trip_and_duplicate(url: str) -> None:
    store = await opened(url)
    try:
        r = rec("t1", payload={"x": [1, "é"]}, result=None, deadline_at=9.25, flow="f")
        await store.insert(r)
        assert await store.get("t1") == r
        assert await store.get("nope") is None
        with pytest.raises(TaskExists):
            await store.insert(r)
    finally:
        await store.aclose()


async def test_update_is_atomic_and_reports_no_change(url: str) -> None:
    store = await opened(url)
    try:
        await store.insert(rec("t", progress=0.0))

        def bump(r: TaskRecord) -> TaskRecord:
            return msgspec.structs.replace(r, progress=r.progress + 1)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(store.update, "t", bump)
        got = await store.get("t")
        assert got is not None and got.progress == 20
        assert await store.update("t", lambda r: None) == (got, False)
        assert await store.update("nope", bump) == (None, False)
        done, changed = await store.update("t", lambda r: cancel(r, 3.0))
        assert changed and done is not None and done.status == "canceled"
    finally:
        await store.aclose()


async def test_deadlines_lists_unfinished_tasks_only(url: str) -> None:
    store = await opened(url)
    try:
        await store.insert(rec("a", deadline_at=5.0))
        await store.insert(rec("b", deadline_at=6.0, status="succeeded"))
        await store.insert(rec("c"))
        assert await store.deadlines() == [(5.0, "a")]
    finally:
        await store.aclose()


async def test_reopen_keeps_everything_and_newer_schema_stops_it(url: str) -> None:
    store = await opened(url)
    await store.insert(rec("kept", status="paused", envelope={"id": "kept"}, pause={"p": 1}))
    await store.aclose()
    store = await opened(url)  # migrate is idempotent
    try:
        kept = await store.get("kept")
        assert kept is not None and kept.envelope == {"id": "kept"}
    finally:
        await store.aclose()
    await _set_version(url, 99)
    with pytest.raises(SchemaTooNew, match="schema version 99, newer than this gateway's 2"):
        await opened(url)


async def _set_version(url: str, version: int) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite://"))
        db.execute("UPDATE asya_schema SET version = ?", (version,))
        db.commit()
        db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute("UPDATE asya_schema SET version = $1", version)
        await conn.close()


def test_bad_urls_are_refused_naming_the_forms() -> None:
    with pytest.raises(StoreError, match="expected sqlite:///PATH or postgresql://"):
        open_store("mysql://u:secret@h/db")
    with pytest.raises(StoreError) as info:
        open_store("redis://u:secret@h/db")
    assert "secret" not in str(info.value)


async def test_verify_store_gives_one_line_for_a_too_new_schema(short_tmp: Path) -> None:
    from asya_gateway.store import verify_store

    url = f"sqlite://{short_tmp}/v.db"
    await verify_store(url)
    await _set_version(url, 3)
    with pytest.raises(SchemaTooNew) as info:
        await verify_store(url)
    assert "\n" not in str(info.value) and "upgrade asya-gateway" in str(info.value)
