"""The task API and event ingest over real HTTP: status codes and the reasons they give."""

from __future__ import annotations

import httpx
import pytest

from .helpers import fly, post_events, running_gateway, start_task, status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_status_transitions_over_http() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url, ["a", "b"])
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert view["status"] == "pending" and view["progress"] == 0.0
        assert set(view) >= {"id", "status", "progress", "created_at", "updated_at"}
        seq = [
            status("received", prev=[], curr="a", next=["b"]),
            status("processing", prev=[], curr="a", next=["b"]),
            status("completed", prev=["a"], curr="b", next=[], actor="a"),
            status("received", prev=[], curr="a", next=["b"]),  # late duplicate: no regress
        ]
        for ev in seq:
            assert await post_events(c, gw.url, tid, ev) == 204
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert view["status"] == "running" and view["progress"] == 0.5
        assert await post_events(c, gw.url, tid, status("paused")) == 204
        assert await post_events(c, gw.url, tid, status("processing")) == 204  # stale
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()["status"] == "paused"
        ok = status("succeeded", id=tid, status="succeeded", progress=1.0, result={"n": 1})
        assert await post_events(c, gw.url, tid, ok) == 204
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert view["status"] == "succeeded" and view["result"] == {"n": 1}
        assert view["progress"] == 1.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "malformed JSON"),
        (b'{"type": "status"}', "without `status`"),
        (b'{"type": "status", "status": "bogus"}', "unknown status 'bogus'"),
        (b'{"type": "fly", "data": "text"}', "FLY `data` must be an object"),
        (b'[{"type": "fly", "data": {}}, {"kind": "fly"}]', "`$[1]`"),
        (b'{"type":"fly","data":' + b"[" * 3000 + b"]" * 3000 + b"}", "nested too deeply"),
    ],
)
async def test_bad_event_bodies_get_400_naming_the_problem(body: bytes, reason: str) -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url)
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", content=body)
        assert r.status_code == 400
        assert reason in r.json()["error"]


async def test_unknown_ids_and_limits() -> None:
    async with running_gateway(max_body_bytes=1000) as gw, httpx.AsyncClient() as c:
        assert await post_events(c, gw.url, "nope", status("received")) == 404
        assert await post_events(c, gw.url, "nope", fly(0)) == 204  # accepted and dropped
        assert gw.registry.fly_dropped_unknown == 1
        assert (await c.get(f"{gw.url}/api/v1/mesh/nope")).status_code == 404
        assert (await c.delete(f"{gw.url}/api/v1/mesh/nope")).status_code == 404
        assert (await c.get(f"{gw.url}/stream/nope")).status_code == 404
        tid = await start_task(c, gw.url)
        big = {"type": "fly", "data": {"text": "x" * 2000}}
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=big)
        assert r.status_code == 413 and "over 1000 bytes" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"payload": 1}, "`route` is required"),
        ({"route": ["a", "x-sink"]}, "end actor 'x-sink'"),
        ({"route": ["bad name!"]}, "invalid actor name"),
        ({"route": 3}, "Expected `str | array | null`"),
        ({"route": ["a"], "timeout": -1}, "`timeout` must be a positive"),
    ],
)
async def test_create_rejects_bad_tasks(body: object, reason: str) -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/api/v1/mesh", json=body)
        assert r.status_code == 400 and reason in r.json()["error"], r.text
        assert gw.enqueued == []


async def test_create_with_query_actor_as_upstream_mesh_api() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/api/v1/mesh/?actor=echo", json={"payload": {"x": 1}})
        assert r.status_code == 201
        assert gw.enqueued[0][0] == "asya-default-echo"


async def test_legacy_forms_have_the_same_effect() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        tid = await start_task(c, gw.url, ["a"])
        r = await c.post(f"{gw.url}/mesh/{tid}/fly", json={"partial": True, "text": "x"})
        assert r.status_code == 200
        r = await c.post(
            f"{gw.url}/mesh/{tid}/progress",
            json={"prev": [], "curr": "a", "next": [], "status": "processing"},
        )
        assert r.status_code == 200 and r.json()["progress_percent"] == 50.0
        r = await c.post(f"{gw.url}/mesh/unknown/progress", json={"status": "received"})
        # 404, unlike upstream's legacy gateway: a sidecar must not learn "legacy-only" from it
        assert r.status_code == 404 and "unknown task" in r.json()["error"]
        r = await c.post(f"{gw.url}/mesh/unknown/final", json={"status": "failed"})
        assert r.status_code == 404
        r = await c.post(
            f"{gw.url}/mesh/{tid}/final", json={"id": tid, "status": "succeeded", "result": 5}
        )
        assert r.status_code == 200
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).json()
        assert view["status"] == "succeeded" and view["result"] == 5
        task = gw.registry.get(tid)
        assert task is not None and task.fly_count == 1


async def test_health_and_page() -> None:
    async with running_gateway() as gw, httpx.AsyncClient() as c:
        assert (await c.get(f"{gw.url}/health")).text == "OK"
        page = await c.get(f"{gw.url}/")
        assert page.status_code == 200 and "EventSource" in page.text
