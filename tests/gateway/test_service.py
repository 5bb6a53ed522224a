"""The task service through REST and its own API: flows, deadlines, the cancellation feed,
pause and resume, `watch` (typed updates)."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from asya_gateway.flows import Flow, Flows
from asya_gateway.service import FlyUpdate, NotPaused, StatusUpdate, TaskUpdate

from .helpers import SseEvent, fly, post_events, read_sse, running_gateway, start_task, status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

FLOWS = Flows([Flow(name="summarize", route=["a", "b"], timeout=0.5, description="d")])


async def test_flows_are_listed_and_a_flow_creates_a_task_with_its_deadline() -> None:
    async with running_gateway(app_options={"flows": FLOWS}) as gw, httpx.AsyncClient() as c:
        listed = (await c.get(f"{gw.url}/api/v1/flows")).json()["flows"]
        assert [f["name"] for f in listed] == ["summarize"] and listed[0]["route"] == ["a", "b"]
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"flow": "summarize", "payload": {"q": 1}})
        assert r.status_code == 201, r.text
        queue, body = gw.enqueued[0]
        env = json.loads(body)
        assert queue == "asya-default-a" and env["route"]["next"] == ["b"]
        assert env["status"]["deadline_at"].endswith("Z") and "." in env["status"]["deadline_at"]
        view = (await c.get(f"{gw.url}/api/v1/mesh/{r.json()['id']}")).json()
        assert view["flow"] == "summarize" and view["deadline_at"] == env["status"]["deadline_at"]
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"flow": "nope"})
        assert r.status_code == 400 and "unknown flow 'nope'" in r.json()["error"]


async def test_deadline_fails_the_task_ends_its_stream_and_feeds_sidecars() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        feed: list[SseEvent] = []
        async with (
            c.stream("GET", f"{gw.url}/api/v1/mesh/feed") as f,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read_sse, f, feed)
            r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"], "timeout": 0.4})
            tid = r.json()["id"]
            events: list[SseEvent] = []
            with anyio.fail_after(5):  # nobody ever picks the task up
                async with c.stream("GET", f"{gw.url}/stream/{tid}") as s:
                    await read_sse(s, events)
            assert events[-1].terminal and events[-1].data["status"] == "failed"
            assert events[-1].data["error"]["type"] == "Timeout"
            view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()  # what a pre-flight sees
            assert view["status"] == "failed" and view["error"]["type"] == "Timeout"
            assert "deadline" in view["error"]["message"]
            other = await start_task(c, gw.url)
            assert (await c.delete(f"{gw.url}/api/v1/mesh/{other}")).status_code == 204
            with anyio.fail_after(5):
                while len(feed) < 2:  # noqa: ASYNC110  # fed by the gateway's own events
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        assert [(e.event, e.data) for e in feed] == [
            ("task", {"id": tid, "status": "failed"}),
            ("task", {"id": other, "status": "canceled"}),
        ]


async def test_pause_stores_the_envelope_and_resume_continues_on_route_curr() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url, ["a", "b"])
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/resume", json={"payload": {"x": 1}})
        assert r.status_code == 409 and "not paused" in r.json()["error"]
        envelope = {
            "id": tid,
            "route": {"prev": ["a"], "curr": "b", "next": []},
            "headers": {"x-asya-pause": {"prompt": "Approve?"}, "keep": 1},
            "payload": {"draft": "text", "a2a": {"task": {"history": [{"role": "user"}]}}},
        }
        paused = status("paused", envelope=envelope, pause={"prompt": "Approve?"})
        assert await post_events(c, gw.url, tid, paused) == 204
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert view["status"] == "paused" and view["pause"] == {"prompt": "Approve?"}
        message = {"role": "user", "parts": [{"kind": "text", "text": "yes"}, {"data": {"ok": 1}}]}
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/resume", json={"message": message})
        assert r.status_code == 202 and r.json()["status"] == "running"
        queue, body = gw.enqueued[-1]
        env = json.loads(body)
        assert queue == "asya-default-b"
        assert env["headers"] == {"keep": 1}
        assert env["payload"]["draft"] == "text" and env["payload"]["query"] == "yes"
        assert env["payload"]["ok"] == 1
        assert env["payload"]["a2a"]["task"]["history"] == [{"role": "user"}, message]
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()["status"] == "running"
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/resume", json={"payload": {"x": 1}})
        assert r.status_code == 409
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/resume", json={})
        assert r.status_code == 400 and "`payload`" in r.json()["error"]
        with pytest.raises(NotPaused):
            await gw.engine.resume(tid, patch={})


async def test_watch_yields_snapshot_flys_and_the_terminal_then_ends() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        task = await gw.engine.create(route=["a"], payload={"p": 1})
        got: list[TaskUpdate] = []
        async with gw.engine.watch(task.id) as updates:
            await post_events(c, gw.url, task.id, [fly(0), fly(1)])
            await post_events(c, gw.url, task.id, status("succeeded", result={"r": 2}))
            with anyio.fail_after(5):
                async for u in updates:
                    got.append(u)
        assert isinstance(got[0], StatusUpdate) and got[0].task.status == "pending"
        assert [u.data["text"] for u in got if isinstance(u, FlyUpdate)] == ["t0", "t1"]
        last = got[-1]
        assert isinstance(last, StatusUpdate) and last.task.result == {"r": 2}
        ids = [u.event_id for u in got]
        assert ids == sorted(ids)
        # Replay after an id: exactly what came after it.
        async with gw.engine.watch(task.id, last_event_id=ids[1]) as updates:
            rest = [u async for u in updates]
        assert [u.event_id for u in rest] == ids[2:]


async def test_a_hops_statuses_in_one_body_each_reach_the_stream_in_order() -> None:
    # They are stored in one transaction; a client still sees every step, in order, and the
    # progress never goes back (a late `received` keeps the processing figure).
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url, ["a", "b"])
        events: list[SseEvent] = []
        async with c.stream("GET", f"{gw.url}/stream/{tid}") as s, anyio.create_task_group() as tg:
            tg.start_soon(read_sse, s, events)
            hop = {"prev": [], "curr": "a", "next": ["b"]}
            done = {"prev": ["a"], "curr": "b", "next": []}
            body = [
                status("received", **hop),
                status("processing", **hop),
                status("received", **hop),  # late
                status("completed", actor="a", **done),
                status("succeeded", result={"ok": 1}, **done),
            ]
            assert await post_events(c, gw.url, tid, body) == 204
        steps = [e.data for e in events if e.event == "update"]
        assert [d["state"] for d in steps] == [
            "pending", "received", "processing", "received", "completed", "succeeded"
        ]  # fmt: skip
        progress = [d["progress_percent"] for d in steps]
        assert progress == sorted(progress) == [0.0, 5.0, 25.0, 25.0, 50.0, 100.0]
        assert events[-1].terminal and events[-1].data["result"] == {"ok": 1}
