"""Owners in the task store: schema 2 adds the `owner` column (filled from existing rows), and a
task's owner holds across a restart of the gateway on the same store."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import httpx
import msgspec
import pytest

from asya_gateway.state import TaskRecord
from asya_gateway.store import open_store
from asya_gateway.store.base import SCHEMA_VERSION

from .helpers import ALICE, BOB, gateway

pytestmark = pytest.mark.anyio

_V1 = [
    "CREATE TABLE asya_schema (version INTEGER NOT NULL)",
    "INSERT INTO asya_schema VALUES (1)",
    "CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at REAL,"
    " updated_at REAL NOT NULL, doc BLOB NOT NULL)",
]


def _doc(task_id: str, owner: str | None) -> bytes:
    rec = TaskRecord(id=task_id, route=["a"], created_at=1.0, updated_at=1.0, owner=owner)
    return msgspec.json.encode(rec)


async def test_sqlite_v1_rows_migrate_with_their_owner() -> None:
    path = Path(tempfile.mkdtemp(dir="/tmp")) / "old.db"
    db = sqlite3.connect(path)
    for stmt in _V1:
        db.execute(stmt)
    db.execute("INSERT INTO tasks VALUES ('t1', 'pending', NULL, 1.0, ?)", (_doc("t1", "key:a"),))
    db.execute("INSERT INTO tasks VALUES ('t2', 'pending', NULL, 1.0, ?)", (_doc("t2", None),))
    db.commit()
    db.close()
    store = open_store(f"sqlite://{path}")
    await store.open()
    try:
        t1 = await store.get("t1")
        assert t1 is not None and t1.owner == "key:a"
        await store.insert(
            TaskRecord(id="t3", route=["a"], created_at=2, updated_at=2, owner="jwt:s")
        )
    finally:
        await store.aclose()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM asya_schema").fetchone()[0] == SCHEMA_VERSION
    rows = dict(db.execute("SELECT id, owner FROM tasks").fetchall())
    assert rows == {"t1": "key:a", "t2": None, "t3": "jwt:s"}
    db.close()


async def test_postgres_v1_rows_migrate_with_their_owner(short_tmp: Path) -> None:
    import asyncpg

    from tests.gateway.stores import database_url

    async with database_url("postgres", str(short_tmp)) as url:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE asya_schema (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO asya_schema VALUES (1)")
        await conn.execute(
            "CREATE TABLE asya_tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at"
            " DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL)"
        )
        await conn.execute(
            "INSERT INTO asya_tasks VALUES ('t1', 'pending', NULL, 1.0, $1::jsonb)",
            _doc("t1", "key:a").decode(),
        )
        store = open_store(url)
        await store.open()
        try:
            t1 = await store.get("t1")
            assert t1 is not None and t1.owner == "key:a"
        finally:
            await store.aclose()
        assert await conn.fetchval("SELECT owner FROM asya_tasks WHERE id = 't1'") == "key:a"
        assert await conn.fetchval("SELECT version FROM asya_schema") == SCHEMA_VERSION
        await conn.close()


async def test_owner_survives_a_restart() -> None:
    db = f"sqlite://{tempfile.mkdtemp(dir='/tmp')}/gw.db"
    async with gateway(database_url=db) as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"]}, headers=ALICE)
        tid = r.json()["id"]
    async with gateway(database_url=db) as gw, httpx.AsyncClient() as c:
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=BOB)).status_code == 404
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 200
