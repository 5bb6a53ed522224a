"""The PostgreSQL task store, through asyncpg: a connection pool, one row per task (JSONB).

`update` is `SELECT … FOR UPDATE` + `UPDATE` in one transaction, so replicas on one database
never interleave their changes to a task. Schema changes take an advisory lock, so replicas
starting together migrate once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import asyncpg

from ..state import TaskRecord
from .base import (
    SCHEMA_VERSION,
    Change,
    Cursor,
    StoreError,
    TaskExists,
    Updated,
    check_version,
    decode,
    encode,
    redact,
)

SCHEMA_LOCK: Final = 0x61737961  # "asya": the advisory lock around migrations (bus too)
_MIGRATIONS: Final = {
    1: [
        "CREATE TABLE asya_tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
        " deadline_at DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL)",
        "CREATE INDEX asya_tasks_deadline ON asya_tasks (deadline_at) WHERE deadline_at IS NOT"
        " NULL AND status NOT IN ('succeeded', 'failed', 'canceled')",
    ],
    # The owner (`key:NAME` / `jwt:SUB`) as a column too, filled from the rows' documents.
    2: [
        "ALTER TABLE asya_tasks ADD COLUMN owner TEXT",
        "UPDATE asya_tasks SET owner = doc->>'owner'",
        "CREATE INDEX asya_tasks_owner ON asya_tasks (owner) WHERE owner IS NOT NULL",
    ],
    # When the task was created, as a column too (ListTasks pages by it), filled from the rows.
    3: [
        "ALTER TABLE asya_tasks ADD COLUMN created_at DOUBLE PRECISION",
        "UPDATE asya_tasks SET created_at = (doc->>'created_at')::double precision",
        "CREATE INDEX asya_tasks_created ON asya_tasks (created_at, id)",
        "CREATE INDEX asya_tasks_owner_created ON asya_tasks (owner, created_at, id)"
        " WHERE owner IS NOT NULL",
    ],
}


@contextlib.asynccontextmanager
async def _mapped(url: str) -> AsyncIterator[None]:
    """asyncpg's connection troubles as StoreError (the doors answer 503; the pool reconnects)."""
    try:
        yield
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"task store {redact(url)}: {exc}") from exc


class PostgresStore:
    """`postgresql://…` (or `postgres://…`)."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("task store is not open")
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self._sizes[0], max_size=self._sizes[1]
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"task store {redact(self.url)}: {exc}") from None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS asya_schema (version INTEGER NOT NULL)"
                )
                found = await conn.fetchval("SELECT version FROM asya_schema")
                check_version(found or 0, self.url)
                for version in range((found or 0) + 1, SCHEMA_VERSION + 1):
                    for stmt in _MIGRATIONS[version]:
                        await conn.execute(stmt)
                if found is None:
                    await conn.execute("INSERT INTO asya_schema VALUES ($1)", SCHEMA_VERSION)
                elif found < SCHEMA_VERSION:
                    await conn.execute("UPDATE asya_schema SET version = $1", SCHEMA_VERSION)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def insert(self, rec: TaskRecord) -> None:
        async with _mapped(self.url):
            await self._insert(rec)

    async def _insert(self, rec: TaskRecord) -> None:
        try:
            await self.pool.execute(
                "INSERT INTO asya_tasks (id, status, deadline_at, updated_at, doc, owner,"
                " created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
                rec.id,
                rec.status,
                rec.deadline_at,
                rec.updated_at,
                encode(rec).decode(),
                rec.owner,
                rec.created_at,
            )
        except asyncpg.UniqueViolationError:
            raise TaskExists(f"task {rec.id!r} already exists") from None

    async def get(self, task_id: str) -> TaskRecord | None:
        async with _mapped(self.url):
            doc = await self.pool.fetchval(
                "SELECT doc::text FROM asya_tasks WHERE id = $1", task_id
            )
        return None if doc is None else decode(doc)

    async def update(self, task_id: str, change: Change) -> tuple[TaskRecord | None, bool]:
        async with _mapped(self.url):
            return await self._update(task_id, change)

    async def update_many(self, jobs: list[tuple[str, Change]]) -> list[Updated | BaseException]:
        # Side by side, each its own transaction (one row lock each): one transaction for all
        # could deadlock against another replica locking the same rows in another order.
        out: list[Updated | BaseException] = [StoreError("not run")] * len(jobs)

        async def one(i: int, task_id: str, change: Change) -> None:
            try:
                out[i] = await self.update(task_id, change)
            except Exception as exc:
                out[i] = exc

        async with anyio.create_task_group() as tg:
            for i, (task_id, change) in enumerate(jobs):
                tg.start_soon(one, i, task_id, change)
        return out

    async def _update(self, task_id: str, change: Change) -> tuple[TaskRecord | None, bool]:
        async with self.pool.acquire() as conn, conn.transaction():
            doc = await conn.fetchval(
                "SELECT doc::text FROM asya_tasks WHERE id = $1 FOR UPDATE", task_id
            )
            if doc is None:
                return None, False
            old = decode(doc)
            new = change(old)
            if new is None:
                return old, False
            await conn.execute(
                "UPDATE asya_tasks SET status = $2, deadline_at = $3, updated_at = $4,"
                " doc = $5::jsonb WHERE id = $1",
                task_id,
                new.status,
                new.deadline_at,
                new.updated_at,
                encode(new).decode(),
            )
            return new, True

    async def deadlines(self) -> list[tuple[float, str]]:
        async with _mapped(self.url):
            rows: list[Any] = await self.pool.fetch(
                "SELECT deadline_at, id FROM asya_tasks WHERE deadline_at IS NOT NULL"
                " AND status NOT IN ('succeeded', 'failed', 'canceled')"
            )
        return [(float(r[0]), str(r[1])) for r in rows]

    async def recent(
        self, limit: int, *, owner: str | None = None, before: Cursor | None = None
    ) -> list[TaskRecord]:
        where: list[str] = []
        args: list[object] = []
        if owner is not None:
            args.append(owner)
            where.append(f"owner = ${len(args)}")
        if before is not None:
            args += [before[0], before[1]]
            where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(max(0, limit))
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        query = (
            f"SELECT doc::text FROM asya_tasks{cond}"  # only placeholders vary
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
        )
        async with _mapped(self.url):
            rows: list[Any] = await self.pool.fetch(query, *args)
        return [decode(r[0]) for r in rows]


__all__ = ["SCHEMA_LOCK", "PostgresStore"]
