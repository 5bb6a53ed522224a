"""Two real gateway processes on one PostgreSQL database act as one: events posted to A reach
streams on B (a FLY over NOTIFY's 8,000-byte limit intact), Last-Event-ID resumes on the other
replica with nothing lost or repeated, and a lost database connection ends streams instead of
starving them."""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from .helpers import SseEvent, collect_stream, post_events, read_sse, status, wait_until
from .stores import database_url
from .test_restart_e2e import GatewayProc

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(90)]


def fly(i: int, pad: int = 0) -> dict[str, object]:
    return {"type": "fly", "seq": i, "data": {"text": f"t{i}", "pad": "x" * pad}}


async def test_two_replicas_share_every_event_and_event_ids(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url("postgres", str(short_tmp)) as url:
        a = GatewayProc(short_tmp, url, subprocess_env)
        b = GatewayProc(short_tmp, url, subprocess_env)
        try:
            await a.start()
            await b.start()
            await a.declare("x")  # the test plays x's sidecar
            async with httpx.AsyncClient(timeout=30) as c:
                r = await c.post(f"{b.base}/api/v1/mesh", json={"route": ["x"], "payload": {}})
                tid = r.json()["id"]
                assert (await c.get(f"{a.base}/api/v1/mesh/{tid}")).json()["status"] == "pending"
                on_b: list[SseEvent] = []
                async with (
                    c.stream("GET", f"{b.base}/stream/{tid}") as s,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(read_sse, s, on_b)
                    await wait_until(lambda: on_b, 5)  # subscribed
                    assert await post_events(c, a.base, tid, status("processing", curr="x")) == 204
                    for i in range(5):
                        big = 20_000 if i == 2 else 0  # over NOTIFY's limit: by reference
                        assert await post_events(c, a.base, tid, fly(i, big)) == 204
                    await wait_until(lambda: len(on_b) >= 7, 10)
                    tg.cancel_scope.cancel()  # the client goes away mid-task...
                texts = [e.data["text"] for e in on_b if e.event == "partial"]
                assert texts == ["t0", "t1", "t2", "t3", "t4"]
                assert len(on_b[4].data["pad"]) == 20_000
                # ...and resumes on the other replica, from the third FLY it saw.
                resume_from = on_b[3].id
                final = status("succeeded", result={"ok": True}, flies=7)
                await post_events(c, b.base, tid, final)  # x-sink posts to B...
                await post_events(c, a.base, tid, [fly(5), fly(6)])  # ...the last FLYs to A
                headers = {"Last-Event-ID": str(resume_from)}
                rest = await collect_stream(c, f"{a.base}/stream/{tid}", headers)
                ids_b = [e.id for e in on_b]
                assert [e.id for e in rest][: len(ids_b) - 4] == ids_b[4:]  # same ids on A
                rest_texts = [e.data["text"] for e in rest if e.event == "partial"]
                assert rest_texts == ["t2", "t3", "t4", "t5", "t6"]  # nothing lost or repeated
                assert rest[-1].terminal and rest[-1].data["result"] == {"ok": True}
        finally:
            a.stop()
            b.stop()


async def test_a_replica_that_loses_its_database_connection_ends_streams_and_recovers(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url("postgres", str(short_tmp)) as url:
        a = GatewayProc(short_tmp, url, subprocess_env)
        try:
            await a.start()
            await a.declare("x")  # the test plays x's sidecar
            async with httpx.AsyncClient(timeout=30) as c:
                r = await c.post(f"{a.base}/api/v1/mesh", json={"route": ["x"], "payload": {}})
                tid = r.json()["id"]
                events: list[SseEvent] = []
                with anyio.fail_after(15):
                    async with (
                        c.stream("GET", f"{a.base}/stream/{tid}") as s,
                        anyio.create_task_group() as tg,
                    ):
                        tg.start_soon(read_sse, s, events)
                        await wait_until(lambda: events, 5)
                        conn = await asyncpg.connect(url)
                        killed = await conn.fetchval(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                        await conn.close()
                        assert killed >= 1
                # The stream ended (the client would reconnect) instead of waiting forever.
                assert len(events) == 1
                # It reconnects by itself: events flow to new streams again.
                again: list[SseEvent] = []
                with anyio.fail_after(20):
                    while not (again and again[-1].terminal):
                        again.clear()
                        async with (
                            c.stream("GET", f"{a.base}/stream/{tid}") as s,
                            anyio.create_task_group() as tg,
                        ):
                            if s.status_code == 200:
                                tg.start_soon(read_sse, s, again)
                                await wait_until(lambda: again, 5)
                                done = status("succeeded", result=1)
                                if await post_events(c, a.base, tid, done) != 204:
                                    tg.cancel_scope.cancel()  # its pool was still reconnecting
                        await anyio.sleep(0.1)  # polled: the replica reconnects on its own
                assert again[-1].terminal and again[-1].data["result"] == 1
        finally:
            a.stop()
