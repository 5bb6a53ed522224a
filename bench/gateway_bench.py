"""Gateway replicas and store: FLY latency across two replicas vs one; store throughput vs raw.

    eval "$(bash /work/shared/tools/services.sh env postgres)"   # sets DATABASE_URL
    .venv/bin/python bench/gateway_bench.py [--quick]

1. FLY latency from the handler's yield to an SSE client at a steady 1,000 FLY/s
   (bench/fly_handlers.py:steady stamps the wall clock at each yield), p50/p99, target p99 <=
   10 ms. Two replicas on one PostgreSQL database: the task is created on replica A (so the
   sidecar posts its events to A) and streamed from replica B (LISTEN/NOTIFY carries them).
   Baseline in the same run: one replica on the same database, created and streamed there.
2. Status-change throughput of the task store: tasks/s created and finished (`insert`, then
   an `update` to `succeeded`: what every task costs), on SQLite and PostgreSQL, 1 and 16
   concurrent writers. Baseline in the same run: raw single-row INSERTs of the same documents
   into a table of the same shape with the same durability (SQLite WAL + synchronous=NORMAL,
   autocommit; PostgreSQL autocommit through an asyncpg pool).

Every database is fresh (created and dropped here); the mesh is `asya dev`'s processes on
this machine, the client in this process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asya_dev.cli import DevOptions  # noqa: E402
from asya_dev.mesh import dev_flows, plan_mesh, wait_ready  # noqa: E402
from asya_dev.supervisor import Supervisor  # noqa: E402
from asya_gateway.state import TaskRecord  # noqa: E402
from asya_gateway.store import open_store  # noqa: E402
from asya_gateway.store.base import encode  # noqa: E402
from bench.sse_read import read_flys  # noqa: E402

HANDLERS = {"steady": "bench.fly_handlers:steady"}
RATE = 1000


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


@asynccontextmanager
async def fresh_database(admin: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards)."""
    import asyncpg

    name = f"asya_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


# -- 1. FLY latency through replicas ---------------------------------------------------------


async def latency(
    client: httpx.AsyncClient, create_on: str, stream_on: str, n: int, received: list[int]
) -> list[float]:
    """One task of `n` FLYs at RATE/s created on `create_on`, streamed from `stream_on` (ms)."""
    lat: list[float] = []

    def on_fly(data: bytes) -> None:
        lat.append((time.time_ns() - msgspec.json.decode(data)["t"]) / 1e6)

    body = {"route": ["steady"], "payload": {"n": n, "rate": RATE}}
    r = await client.post(f"{create_on}/api/v1/mesh", json=body)
    r.raise_for_status()
    tid = r.json()["id"]
    # From the task's first event: the few FLYs before this subscription are replayed (late,
    # so the first tenth is dropped as warm-up below).
    async with client.stream("GET", f"{stream_on}/stream/{tid}?last_event_id=0") as s:
        status = (await read_flys(s, on_fly))["status"]
    assert status == "succeeded", status
    received.append(len(lat))  # FLY is at-most-once: a sidecar buffer overflow drops (counted)
    return lat[len(lat) // 10 :]


async def fly_latency(
    database_url: str, replicas: int, n: int, workdir: Path, received: list[int]
) -> list[float]:
    port = 19000 + (os.getpid() + replicas * 10 + len(database_url)) % 900
    opts = DevOptions(
        route=["steady"],
        handlers=HANDLERS,
        port=port,
        workdir=workdir / f"mesh{replicas}-{database_url[:6]}",
        gateways=replicas,
        database_url=database_url,
    )
    opts.workdir.mkdir(parents=True)
    (opts.workdir / "flows.json").write_bytes(dev_flows(opts))  # as `asya dev` does
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    plan = plan_mesh(opts, env)
    sup = Supervisor(sys.stderr)
    try:
        async with anyio.create_task_group() as tg:
            for spec in plan.children:
                await sup.start(tg, spec)
            await wait_ready(plan, 60)
            a = plan.gateway_url
            b = plan.replica_urls[0] if plan.replica_urls else a
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client:
                await latency(client, a, b, 200, [])  # warm-up: connections, LISTEN, imports
                out = await latency(client, a, b, n, received)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await sup.stop_all()
        sup.kill_all_now()
    return out


# -- 2. store throughput ------------------------------------------------------------------


def _record(i: int) -> TaskRecord:
    now = time.time()
    return TaskRecord(
        id=f"{uuid.uuid4()}", route=["a", "b"], created_at=now, updated_at=now, payload={"i": i}
    )


def _finished(rec: TaskRecord) -> TaskRecord:
    return msgspec.structs.replace(
        rec, status="succeeded", state="succeeded", updated_at=time.time(), result={"ok": True}
    )


async def _concurrently(n: int, writers: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run `one(i)` for i < n on `writers` concurrent workers; the rate (calls/s)."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await one(i)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(worker)
    return n / (time.perf_counter() - t0)


async def store_rate(url: str, n: int, writers: int) -> float:
    """Tasks/s created and finished through the store interface."""
    store = open_store(url)
    await store.open()
    try:

        async def task(i: int) -> None:
            rec = _record(i)
            await store.insert(rec)
            done, changed = await store.update(rec.id, _finished)
            assert done is not None and changed

        return await _concurrently(n, writers, task)
    finally:
        await store.aclose()


def sqlite_raw_rate(path: str, n: int) -> float:
    """Raw single-row INSERTs/s into a table of the store's shape, same PRAGMAs."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE raw (id TEXT PRIMARY KEY, status TEXT NOT NULL, deadline_at REAL,"
        " updated_at REAL NOT NULL, doc BLOB NOT NULL)"
    )
    recs = [_record(i) for i in range(n)]
    t0 = time.perf_counter()
    for rec in recs:
        db.execute(
            "INSERT INTO raw VALUES (?, ?, ?, ?, ?)",
            (rec.id, rec.status, rec.deadline_at, rec.updated_at, encode(rec)),
        )
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


async def pg_raw_rate(url: str, n: int, writers: int) -> float:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=writers, max_size=writers)
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS raw (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " deadline_at DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL,"
            " doc JSONB NOT NULL)"
        )
        recs = [_record(i) for i in range(n)]

        async def insert(i: int) -> None:
            rec = recs[i]
            await pool.execute(
                "INSERT INTO raw VALUES ($1, $2, $3, $4, $5::jsonb)",
                rec.id,
                rec.status,
                rec.deadline_at,
                rec.updated_at,
                encode(rec).decode(),
            )

        return await _concurrently(n, writers, insert)
    finally:
        await pool.close()


# -- the run --------------------------------------------------------------------------------


async def main(quick: bool) -> None:
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        sys.exit("gateway_bench: set DATABASE_URL (services.sh env postgres) to a PostgreSQL")
    n_fly = 2_000 if quick else 10_000
    n_store = 1_000 if quick else 5_000
    workdir = Path(tempfile.mkdtemp(prefix="asya-gb-", dir="/tmp"))
    os.chdir(ROOT)
    res: dict[str, Any] = {}
    try:
        sqlite_url = f"sqlite://{workdir}/gateway.db"
        res["local"] = await fly_latency(sqlite_url, 1, n_fly, workdir, res.setdefault("n0", []))
        async with fresh_database(admin) as url:
            res["one"] = await fly_latency(url, 1, n_fly, workdir, res.setdefault("n1", []))
            res["two"] = await fly_latency(url, 2, n_fly, workdir, res.setdefault("n2", []))
        for writers in (1, 16):
            db = str(workdir / f"store{writers}.db")
            res[f"sqlite{writers}"] = await store_rate(f"sqlite://{db}", n_store, writers)
            async with fresh_database(admin) as url:
                res[f"pg{writers}"] = await store_rate(url, n_store, writers)
                res[f"pgraw{writers}"] = await pg_raw_rate(url, n_store, writers)
        res["sqliteraw"] = sqlite_raw_rate(str(workdir / "raw.db"), n_store)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(res, n_fly, n_store)


def report(res: dict[str, Any], n_fly: int, n_store: int) -> None:
    print(f"FLY latency, yield -> SSE client at {RATE:,} FLY/s ({n_fly} FLYs, last 90%, ms)")
    one, two = res["one"], res["two"]
    for name, lat, got in (
        ("one gateway on SQLite (in-process fan-out)", res["local"], res["n0"][0]),
        ("one replica on PostgreSQL (create + stream on it)", one, res["n1"][0]),
        ("two replicas (sidecar posts to A, client on B)", two, res["n2"][0]),
    ):
        print(
            f"  {name:50s} p50 {statistics.median(lat):6.2f}  p99 {_pct(lat, 99):6.2f}"
            f"  max {max(lat):7.2f}  ({got} of {n_fly} received)"
        )
    print(
        f"  ratio two/one: p50 {statistics.median(two) / statistics.median(one):.2f}"
        f"  p99 {_pct(two, 99) / _pct(one, 99):.2f}   (target p99 <= 10 ms)"
    )
    print(f"Store: tasks/s created and finished (insert + update), {n_store} tasks")
    for w in (1, 16):
        print(
            f"  {w:2d} writer(s)  SQLite {res[f'sqlite{w}']:8,.0f}/s"
            f"   PostgreSQL {res[f'pg{w}']:8,.0f}/s"
            f"   (raw INSERTs: PostgreSQL {res[f'pgraw{w}']:8,.0f}/s)"
        )
    print(f"  raw single-row INSERTs, SQLite (one writer)  {res['sqliteraw']:8,.0f}/s")
    print(
        "  ratio store tasks/s / raw inserts/s (2 writes per task):"
        f"  SQLite {res['sqlite1'] / res['sqliteraw']:.2f}"
        f"  PostgreSQL x1 {res['pg1'] / res['pgraw1']:.2f}"
        f"  x16 {res['pg16'] / res['pgraw16']:.2f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer FLYs and tasks (about a minute)")
    anyio.run(main, ap.parse_args().quick)
