"""One conformance suite for every task store (SQLite file, real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from asya_gateway.state import TaskRecord, cancel
from asya_gateway.store import (
    SCHEMA_VERSION,
    SchemaTooNew,
    StoreError,
    TaskExists,
    TaskStore,
    open_store,
)

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


async def test_update_many_answers_each_job_in_order(url: str) -> None:
    store = await opened(url)
    try:
        await store.insert(rec("a", progress=0.0))
        await store.insert(rec("b", progress=0.0))

        def bump(r: TaskRecord) -> TaskRecord:
            return msgspec.structs.replace(r, progress=r.progress + 1)

        def broken(r: TaskRecord) -> TaskRecord:
            raise ValueError("bad change")

        out = await store.update_many(
            [("a", bump), ("nope", bump), ("b", lambda r: None), ("a", bump), ("b", broken)]
        )
        a1, missing, same, a2, failed = out
        assert isinstance(a1, tuple) and a1[0] is not None and a1[0].progress == 1 and a1[1]
        assert missing == (None, False)
        assert isinstance(same, tuple) and same[1] is False
        assert isinstance(a2, tuple) and a2[0] is not None and a2[0].progress == 2
        assert isinstance(failed, ValueError)  # one job's failure is its own
        got_a, got_b = await store.get("a"), await store.get("b")
        assert got_a is not None and got_a.progress == 2
        assert got_b is not None and got_b.progress == 0
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
    too_new = f"schema version 99, newer than this gateway's {SCHEMA_VERSION}"
    with pytest.raises(SchemaTooNew, match=too_new):
        await opened(url)


async def test_recent_is_newest_first_by_created_at_then_id(url: str) -> None:
    store = await opened(url)
    try:
        # Ties on created_at are broken by id; owners are mixed, one task has none.
        made = [
            rec("a", created_at=1.0, owner="key:alice"),
            rec("b", created_at=2.0, owner="key:bob"),
            rec("c", created_at=2.0, owner="key:alice"),
            rec("d", created_at=3.25, owner=None),
            rec("e", created_at=1712345678.123456, owner="key:alice"),
        ]
        for r in made:
            await store.insert(r)
        everyone = await store.recent(10)
        assert [r.id for r in everyone] == ["e", "d", "c", "b", "a"]
        assert everyone[0] == made[-1]  # whole records, the float exact
        alice = await store.recent(10, owner="key:alice")
        assert [r.id for r in alice] == ["e", "c", "a"]
        assert await store.recent(10, owner="key:nobody") == []
        assert [r.id for r in await store.recent(2)] == ["e", "d"]
        # `before` is exclusive, on (created_at, id): after ("c" at 2.0) comes "b" at 2.0.
        assert [r.id for r in await store.recent(10, before=(2.0, "c"))] == ["b", "a"]
        assert [r.id for r in await store.recent(10, before=(2.0, "bb"))] == ["b", "a"]
        assert [r.id for r in await store.recent(10, owner="key:alice", before=(2.0, "c"))] == ["a"]
        assert await store.recent(10, before=(1.0, "a")) == []
        assert await store.recent(0) == []
        # An update keeps the task where it was in the order.
        await store.update("a", lambda r: cancel(r, 99.0))
        assert [r.id for r in await store.recent(10)][-1] == "a"
    finally:
        await store.aclose()


async def test_recent_pages_cover_every_task_once(url: str) -> None:
    store = await opened(url)
    try:
        ids = {f"t{i:02d}" for i in range(23)}
        for i, tid in enumerate(sorted(ids)):
            await store.insert(rec(tid, created_at=float(i // 4)))  # runs of equal times
        seen: list[str] = []
        before = None
        while page := await store.recent(5, before=before):
            seen += [r.id for r in page]
            before = (page[-1].created_at, page[-1].id)
        assert len(seen) == len(ids) and set(seen) == ids
    finally:
        await store.aclose()


_V2_TABLES = {
    "sqlite": [
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at REAL,"
        " updated_at REAL NOT NULL, doc BLOB NOT NULL, owner TEXT)",
    ],
    "postgres": [
        "CREATE TABLE asya_tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at DOUBLE"
        " PRECISION, updated_at DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL, owner TEXT)",
    ],
}


async def _make_v2(url: str, rows: list[TaskRecord]) -> None:
    """A database as a schema-2 gateway left it (no created_at column)."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite://"))
        db.execute("CREATE TABLE asya_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO asya_schema VALUES (2)")
        db.execute(_V2_TABLES["sqlite"][0])
        for r in rows:
            db.execute(
                "INSERT INTO tasks VALUES (?, ?, NULL, ?, ?, ?)",
                (r.id, r.status, r.updated_at, msgspec.json.encode(r), r.owner),
            )
        db.commit()
        db.close()
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE asya_schema (version INTEGER NOT NULL)")
    await conn.execute("INSERT INTO asya_schema VALUES (2)")
    await conn.execute(_V2_TABLES["postgres"][0])
    for r in rows:
        await conn.execute(
            "INSERT INTO asya_tasks VALUES ($1, $2, NULL, $3, $4::jsonb, $5)",
            r.id,
            r.status,
            r.updated_at,
            msgspec.json.encode(r).decode(),
            r.owner,
        )
    await conn.close()


async def _schema_version(url: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite://"))
        (found,) = db.execute("SELECT version FROM asya_schema").fetchone()
        db.close()
        return int(found)
    import asyncpg

    conn = await asyncpg.connect(url)
    found = await conn.fetchval("SELECT version FROM asya_schema")
    await conn.close()
    return int(found)


async def test_a_v2_database_migrates_and_lists_its_old_tasks(url: str) -> None:
    old = [
        rec("old1", created_at=1712000000.5, owner="key:alice", status="succeeded"),
        rec("old2", created_at=1712000001.25, owner=None),
        rec("old3", created_at=1712000000.5, owner="key:alice"),
    ]
    await _make_v2(url, old)
    store = await opened(url)
    try:
        assert await _schema_version(url) == SCHEMA_VERSION == 3
        assert [r.id for r in await store.recent(10)] == ["old2", "old3", "old1"]
        assert [r.id for r in await store.recent(10, owner="key:alice")] == ["old3", "old1"]
        assert await store.get("old1") == old[0]
        await store.insert(rec("new", created_at=1712000000.75, owner="key:alice"))
        after = await store.recent(10, owner="key:alice", before=(1712000001.0, "z"))
        assert [r.id for r in after] == ["new", "old3", "old1"]
    finally:
        await store.aclose()


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
    await _set_version(url, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaTooNew) as info:
        await verify_store(url)
    assert "\n" not in str(info.value) and "upgrade asya-gateway" in str(info.value)


async def test_concurrent_updates_of_many_tasks_each_apply_once(url: str) -> None:
    """A sidecar's batch of many tasks' statuses is ingested side by side (SQLite combines
    them into one transaction): every change lands, and a change that raises fails only its
    own caller."""
    store = await opened(url)
    try:
        for i in range(30):
            await store.insert(rec(f"t{i}", progress=0.0))

        def bump(r: TaskRecord) -> TaskRecord:
            if r.id == "t13":
                raise ValueError("bad change")
            return msgspec.structs.replace(r, progress=r.progress + 1)

        results: dict[str, object] = {}

        async def one(tid: str) -> None:
            try:
                results[tid] = (await store.update(tid, bump))[1]
            except ValueError as exc:
                results[tid] = str(exc)

        async with anyio.create_task_group() as tg:
            for i in range(30):
                for _ in range(2):
                    tg.start_soon(one, f"t{i}")
        assert results == {f"t{i}": ("bad change" if i == 13 else True) for i in range(30)}
        for i in range(30):
            got = await store.get(f"t{i}")
            assert got is not None and got.progress == (0 if i == 13 else 2)
    finally:
        await store.aclose()
