"""The client stream and the ingest API against the real gateway over real HTTP (uvicorn)."""

from __future__ import annotations

import socket

import anyio
import httpx
import msgspec
import pytest

from .helpers import (
    SseEvent,
    collect_stream,
    fly,
    post_events,
    read_sse,
    running_gateway,
    start_task,
    status,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SUCCESS = status("succeeded", id="x", status="succeeded", progress=1.0, result={"text": "done"})


def texts(events: list[SseEvent]) -> list[str]:
    return [e.data["text"] for e in events if e.event == "partial"]


async def test_late_subscriber_gets_snapshot_then_live_then_one_terminal() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url, ["a", "b"])
        assert (
            await post_events(
                c, gw.url, tid, status("processing", prev=[], curr="a", next=["b"], actor="a")
            )
            == 204
        )
        assert await post_events(c, gw.url, tid, fly(0)) == 204  # before anyone listens
        events: list[SseEvent] = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as r, anyio.create_task_group() as tg:
            tg.start_soon(read_sse, r, events)
            await wait_until(lambda: events, 5)
            assert await post_events(c, gw.url, tid, [fly(1), SUCCESS]) == 204
        first = events[0]
        assert first.event == "update" and first.data["status"] == "running"
        assert first.data["progress_percent"] == 25.0  # (0 + 0.5) / 2
        assert texts(events) == ["t1"]  # FLY 0 happened before: only the snapshot tells of it
        assert [e.terminal for e in events] == [False, False, True]
        assert events[-1].data["result"] == {"text": "done"}


async def test_no_event_lost_between_snapshot_and_live() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        n = 300

        async def produce() -> None:
            for i in range(n):
                await post_events(c, gw.url, tid, fly(i))
            await post_events(c, gw.url, tid, SUCCESS)

        results: list[list[SseEvent]] = []

        async def subscribe_midway(after: int) -> None:
            await wait_until(lambda: gw.registry.get(tid).fly_count >= after, 30)
            results.append(await collect_stream(c, f"{gw.url}/stream/{tid}"))

        async with anyio.create_task_group() as tg:
            for after in (0, 50, 150, 250):
                tg.start_soon(subscribe_midway, after)
            tg.start_soon(produce)
        for events in results:
            snapshot, rest = events[0], events[1:]
            assert snapshot.event == "update"
            ids = [e.id for e in rest]
            assert ids == list(range(snapshot.id + 1, snapshot.id + 1 + len(rest)))  # no gap
            got = texts(rest)
            assert got == [f"t{i}" for i in range(n - len(got), n)]  # a contiguous tail
            assert sum(e.terminal for e in events) == 1 and events[-1].terminal


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "canceled"])
async def test_exactly_one_terminal_event(outcome: str) -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        events: list[SseEvent] = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as r, anyio.create_task_group() as tg:
            tg.start_soon(read_sse, r, events)
            await post_events(
                c, gw.url, tid, [status("received", prev=[], curr="a", next=[]), fly(0)]
            )
            if outcome == "succeeded":
                await post_events(c, gw.url, tid, SUCCESS)
            elif outcome == "failed":
                await post_events(
                    c, gw.url, tid, status("failed", error="ValueError: boom", error_details="boom")
                )
            else:
                assert (await c.delete(f"{gw.url}/api/v1/mesh/{tid}")).status_code == 204
            # Late duplicates of any terminal are stale: ignored, no second terminal event.
            await post_events(c, gw.url, tid, [SUCCESS, status("failed", error="late")])
            assert (await c.delete(f"{gw.url}/api/v1/mesh/{tid}")).status_code == 204
        terminals = [e for e in events if e.terminal]
        assert len(terminals) == 1 and events[-1] is terminals[0]
        assert terminals[0].data["status"] == outcome
        if outcome == "failed":
            assert terminals[0].data["error"] == "ValueError: boom"
        state = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert state["status"] == outcome


async def test_already_terminal_task_gets_snapshot_then_close() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        await post_events(c, gw.url, tid, [fly(0), SUCCESS])
        with anyio.fail_after(5):
            events = await collect_stream(c, f"{gw.url}/stream/{tid}")
        assert len(events) == 1 and events[0].terminal
        assert events[0].data["result"] == {"text": "done"}


async def test_last_event_id_resume_gets_exactly_the_missed_events() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        await post_events(c, gw.url, tid, [fly(i) for i in range(10)])
        first = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as r:
            await read_sse_until(r, first, 1)
        assert first[0].id == 10
        await post_events(c, gw.url, tid, [fly(i) for i in range(10, 15)])
        events: list[SseEvent] = []
        async with (
            c.stream("GET", f"{gw.url}/stream/{tid}", headers={"Last-Event-ID": "7"}) as r,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read_sse, r, events)
            await post_events(c, gw.url, tid, SUCCESS)
        assert [e.id for e in events] == list(range(8, 17))
        assert texts(events) == [f"t{i}" for i in range(7, 15)]
        assert events[-1].terminal
        # Resuming past the terminal event: 204, so EventSource stops reconnecting.
        r2 = await c.get(f"{gw.url}/stream/{tid}", headers={"Last-Event-ID": "16"})
        assert r2.status_code == 204


async def test_query_last_event_id_zero_replays_from_the_first_event() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        await post_events(c, gw.url, tid, [fly(0), fly(1), SUCCESS])
        events = await collect_stream(c, f"{gw.url}/stream/{tid}?last_event_id=0")
        assert texts(events) == ["t0", "t1"] and events[-1].terminal and len(events) == 3
        # The header wins over the query parameter.
        events = await collect_stream(
            c, f"{gw.url}/stream/{tid}?last_event_id=0", {"Last-Event-ID": "1"}
        )
        assert texts(events) == ["t1"]


async def test_resume_from_before_the_ring_gets_a_fresh_snapshot() -> None:
    async with running_gateway(ring_size=5) as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        await post_events(c, gw.url, tid, [fly(i) for i in range(20)] + [SUCCESS])
        events = await collect_stream(c, f"{gw.url}/stream/{tid}", {"Last-Event-ID": "3"})
        assert len(events) == 1 and events[0].terminal


async def read_sse_until(r: httpx.Response, out: list[SseEvent], n: int) -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await wait_until(lambda: len(out) >= n, 30)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await read_sse(r, out)


async def test_keepalive_comments_are_sent() -> None:
    async with running_gateway(keepalive_seconds=0.1) as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        comments: list[str] = []
        events: list[SseEvent] = []
        with anyio.fail_after(5):
            async with (
                c.stream("GET", f"{gw.url}/stream/{tid}") as r,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(read_sse, r, events, comments)
                await wait_until(lambda: len(comments) >= 3, 30)
                await post_events(c, gw.url, tid, SUCCESS)
        assert comments[:3] == ["keepalive"] * 3
        assert events[-1].terminal


async def test_stalled_client_delays_neither_others_nor_ingest() -> None:
    async with (
        running_gateway(send_timeout_seconds=1.0, subscriber_buffer=64, sndbuf=8192) as gw,
        httpx.AsyncClient() as c,
    ):
        tid = await start_task(c, gw.url)
        # A client that asks for the stream and then never reads, with a tiny window.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
        stalled.sendall(f"GET /stream/{tid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            await wait_until(lambda: gw.registry.get(tid).subscribers, 5)
            events: list[SseEvent] = []
            big = "x" * 4000
            async with (
                c.stream("GET", f"{gw.url}/stream/{tid}") as r,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(read_sse, r, events)
                with anyio.fail_after(10):  # far below n x send_timeout: nobody waited
                    for i in range(300):
                        body = {
                            "type": "fly",
                            "data": {"partial": True, "text": f"t{i}", "pad": big},
                        }
                        assert await post_events(c, gw.url, tid, body) == 204
                    await post_events(c, gw.url, tid, SUCCESS)
            assert texts(events) == [f"t{i}" for i in range(300)]
            assert events[-1].terminal
            # The stalled stream is given up after send_timeout; its drops were counted.
            await wait_until(lambda: gw.registry.stats()["subscriber_dropped_total"] > 0, 15)
        finally:
            stalled.close()


async def test_disconnected_clients_are_removed() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        task = gw.registry.get(tid)
        assert task is not None
        for _ in range(3):
            got: list[SseEvent] = []
            async with c.stream("GET", f"{gw.url}/stream/{tid}") as r:
                await read_sse_until(r, got, 1)
            assert got[0].event == "update"
        await wait_until(lambda: not task.subscribers, 5)
        assert await post_events(c, gw.url, tid, fly(1)) == 204


async def test_500_concurrent_subscribers_all_get_every_event() -> None:
    n_subs, n_fly = 500, 50
    async with running_gateway() as gw:
        limits = httpx.Limits(max_connections=n_subs + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as c:
            tid = await start_task(c, gw.url)
            task = gw.registry.get(tid)
            assert task is not None
            results: list[list[SseEvent]] = [[] for _ in range(n_subs)]

            async def sub(i: int) -> None:
                async with c.stream("GET", f"{gw.url}/stream/{tid}") as r:
                    await read_sse(r, results[i])

            with anyio.fail_after(50):
                async with anyio.create_task_group() as tg:
                    for i in range(n_subs):
                        tg.start_soon(sub, i)
                    await wait_until(lambda: len(task.subscribers) >= n_subs, 30)
                    for start in range(0, n_fly, 10):
                        await post_events(
                            c, gw.url, tid, [fly(i) for i in range(start, start + 10)]
                        )
                    await post_events(c, gw.url, tid, SUCCESS)
        for events in results:
            assert texts(events) == [f"t{i}" for i in range(n_fly)]
            assert sum(e.terminal for e in events) == 1 and events[-1].terminal


async def test_post_with_accept_event_stream_answers_with_the_stream() -> None:
    async with running_gateway(public_url="http://gw.local:9") as gw, httpx.AsyncClient() as c:
        events: list[SseEvent] = []
        async with (
            c.stream(
                "POST",
                f"{gw.url}/api/v1/mesh",
                json={"route": ["a", "b"], "payload": {"prompt": "hi"}, "timeout": 60},
                headers={"Accept": "text/event-stream"},
            ) as r,
            anyio.create_task_group() as tg,
        ):
            assert r.headers["content-type"].startswith("text/event-stream")
            tid = r.headers["x-asya-task-id"]
            tg.start_soon(read_sse, r, events)
            assert len(gw.enqueued) == 1  # enqueued only after the subscription existed
            await post_events(c, gw.url, tid, [fly(0), SUCCESS])
        assert events[0].data["status"] == "pending" and events[0].data["id"] == tid
        assert texts(events) == ["t0"] and events[-1].terminal
        queue, body = gw.enqueued[0]
        env = msgspec.json.decode(body)
        assert queue == "asya-default-a"
        assert env["id"] == tid and env["route"] == {"prev": [], "curr": "a", "next": ["b"]}
        assert env["headers"]["x-asya-gateway-url"] == "http://gw.local:9"
        assert env["status"]["phase"] == "pending" and "deadline_at" in env["status"]
        assert env["payload"] == {"prompt": "hi"}
        plain = await c.post(f"{gw.url}/api/v1/mesh", json={"route": "a,b", "payload": 1})
        assert plain.status_code == 201 and plain.headers["content-type"] == "application/json"


async def test_flys_racing_the_terminal_status_still_reach_clients_before_it() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        events: list[SseEvent] = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as r, anyio.create_task_group() as tg:
            tg.start_soon(read_sse, r, events)
            counted = status("succeeded", status="succeeded", result={"text": "done"}, flies=2)
            await post_events(c, gw.url, tid, counted)  # x-sink's report lands first...
            assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()["status"] == "succeeded"
            # ...the actor's FLYs after, the second before the first
            later = {**fly(1), "seq": 1}
            assert await post_events(c, gw.url, tid, later) == 204
            assert await post_events(c, gw.url, tid, {**fly(0), "seq": 0}) == 204
        assert texts(events) == ["t0", "t1"]
        assert [e.terminal for e in events] == [False, False, False, True]


async def test_a_missing_fly_holds_the_terminal_only_for_the_bound() -> None:
    options = {"terminal_wait_seconds": 0.3}
    async with running_gateway(app_options=options) as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        events: list[SseEvent] = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as r, anyio.create_task_group() as tg:
            tg.start_soon(read_sse, r, events)
            await post_events(c, gw.url, tid, {**fly(0), "seq": 0})
            counted = status("succeeded", status="succeeded", result=1, flies=3)
            await post_events(c, gw.url, tid, [counted, {**fly(2), "seq": 2}])
            # FLY 1 never comes: the terminal waits for it at most the bound, then t2 and it go
        assert texts(events) == ["t0", "t2"]
        assert events[-1].terminal and events[-1].data["result"] == 1
        assert events[-1].at - events[1].at >= 0.25
