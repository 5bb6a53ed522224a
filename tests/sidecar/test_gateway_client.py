"""The gateway client against a scripted real HTTP gateway: fallbacks, drops, the guard."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from asya_mesh.events import Event, FlyEvent, StatusData, StatusEvent
from asya_sidecar.gateway import GatewayClient, safe_gateway_url
from asya_sidecar.metrics import Metrics
from asya_sidecar.reports import fly, status_event

from .fake_gateway import fake_gateway

pytestmark = pytest.mark.anyio


def counter(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"asya_actor_{name}_total") or 0.0


class Fake:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.url.path, body))
        return httpx.Response(self.answer(request.url.path, body))


async def run_client(fake: Fake, events: list[Event], buffer: int = 100) -> Metrics:
    metrics = Metrics("memory")
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, metrics, default_url=gw, buffer=buffer)
        stream = client.open(gw, "id-1")
        for e in events:
            stream.put(e)
        stream.close()
        with anyio.fail_after(5):
            await client.wait_idle()
    return metrics


def flys(n: int) -> list[Event]:
    return [fly({"i": i}, seq=i) for i in range(n)]


@pytest.mark.parametrize("code", [400, 415, 422])
async def test_batch_rejection_resends_one_by_one_in_order(code: int) -> None:
    fake = Fake(lambda path, body: code if isinstance(body, list) else 204)
    m = await run_client(fake, flys(5))
    singles = [b["data"]["i"] for _, b in fake.calls if isinstance(b, dict)]
    assert singles == [0, 1, 2, 3, 4]
    assert counter(m, "fly_forwarded") == 5 and counter(m, "fly_dropped") == 0


async def test_404_uses_legacy_and_sticks_to_it() -> None:
    fake = Fake(lambda path, body: 404 if path.startswith("/api/") else 200)
    await run_client(fake, [StatusEvent(status="received", data=StatusData(curr="a")), *flys(3)])
    legacy = [(p, b) for p, b in fake.calls if not p.startswith("/api/")]
    assert legacy == [
        ("/mesh/id-1/progress", {"status": "received", "curr": "a"}),
        ("/mesh/id-1/fly", {"i": 0}),
        ("/mesh/id-1/fly", {"i": 1}),
        ("/mesh/id-1/fly", {"i": 2}),
    ]
    # Learned after the batch and one single event; never asked again.
    assert len([p for p, _ in fake.calls if p.startswith("/api/")]) == 2


async def test_failing_gateway_drops_and_counts_after_short_retry() -> None:
    fake = Fake(lambda path, body: 503)
    m = await run_client(fake, flys(1))
    assert len(fake.calls) == 3  # first try + two retries
    assert counter(m, "fly_dropped") == 1


async def test_full_buffer_keeps_the_latest_progress_like_fly() -> None:
    fake = Fake(lambda path, body: 204)
    m = await run_client(fake, flys(10), buffer=4)
    sent = [e for _, b in fake.calls for e in (b if isinstance(b, list) else [b])]
    # Order kept; FLYs 3..9 (same keys, no text) folded into one: the latest, standing for 7.
    assert [e["data"]["i"] for e in sent] == [0, 1, 2, 9]
    assert [(e["seq"], e.get("n", 1)) for e in sent] == [(0, 1), (1, 1), (2, 1), (3, 7)]
    assert counter(m, "fly_forwarded") == 10 and counter(m, "fly_dropped") == 0
    assert counter(m, "fly_coalesced") == 6


def text(i: int, t: str) -> Event:
    return fly({"partial": True, "text": t}, seq=i)


async def test_full_buffer_concatenates_text_flys_in_order() -> None:
    fake = Fake(lambda path, body: 204)
    words = [f"w{i} " for i in range(50)]
    m = await run_client(fake, [text(i, w) for i, w in enumerate(words)], buffer=4)
    sent = [e for _, b in fake.calls for e in (b if isinstance(b, list) else [b])]
    assert "".join(e["data"]["text"] for e in sent) == "".join(words)
    assert sum(e.get("n", 1) for e in sent) == 50 and len(sent) == 4
    assert counter(m, "fly_dropped") == 0 and counter(m, "fly_forwarded") == 50


async def test_flys_that_do_not_merge_are_dropped_and_counted_when_full() -> None:
    fake = Fake(lambda path, body: 204)
    events = [*flys(4), fly({"other": 1}, seq=4), text(5, "x")]
    m = await run_client(fake, events, buffer=4)
    sent = [e for _, b in fake.calls for e in (b if isinstance(b, list) else [b])]
    assert [e["data"] for e in sent] == [{"i": i} for i in range(4)]
    assert counter(m, "fly_dropped") == 2


async def test_many_envelopes_share_one_post_with_task_ids() -> None:
    fake = Fake(lambda path, body: 204)
    metrics = Metrics("memory")
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, metrics, default_url=gw, buffer=100)
        lanes = [client.open(gw, f"id-{k}") for k in range(5)]
        for i in range(3):
            for lane in lanes:
                lane.put(fly({"i": i}, seq=i))
        for lane in lanes:
            lane.close()
        with anyio.fail_after(5):
            await client.wait_idle()
    assert [p for p, _ in fake.calls] == ["/api/v1/mesh/events"]
    body = fake.calls[0][1]
    for k in range(5):
        assert [e["data"]["i"] for e in body if e["id"] == f"id-{k}"] == [0, 1, 2]
    assert counter(metrics, "fly_forwarded") == 15


def progress(state: str) -> StatusEvent:
    return StatusEvent(status=state, data=StatusData(curr="a"))


async def test_progress_statuses_linger_so_envelopes_close_in_time_share_a_post() -> None:
    fake = Fake(lambda path, body: 204)
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(
            http, tg, Metrics("memory"), default_url=gw, buffer=100, status_linger=0.5
        )
        first, second = client.open(gw, "id-1"), client.open(gw, "id-2")
        t0 = anyio.current_time()
        first.put(progress("received"))
        for _ in range(10):  # the sender runs: without the linger it takes id-1's status now
            await anyio.lowlevel.checkpoint()
        second.put(progress("received"))
        first.close()
        second.close()
        with anyio.fail_after(5):
            await client.wait_idle()
        waited = anyio.current_time() - t0
    assert [p for p, _ in fake.calls] == ["/api/v1/mesh/events"]
    assert [e["id"] for e in fake.calls[0][1]] == ["id-1", "id-2"]
    assert waited >= 0.5  # the lone statuses did wait the linger out


@pytest.mark.parametrize(
    "urgent",
    [fly({"text": "tok"}, seq=0), StatusEvent(status="succeeded"), StatusEvent(status="paused")],
    ids=["fly", "terminal", "pause"],
)
async def test_a_fly_an_end_or_a_pause_goes_at_once_with_what_lingers(urgent: Event) -> None:
    fake = Fake(lambda path, body: 204)
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(
            http, tg, Metrics("memory"), default_url=gw, buffer=100, status_linger=60
        )
        lingering, other = client.open(gw, "id-1"), client.open(gw, "id-2")
        lingering.put(progress("processing"))
        other.put(urgent)
        lingering.close()
        other.close()
        with anyio.fail_after(5):  # far below the 60 s linger
            await client.wait_idle()
    (body,) = [b for _, b in fake.calls]
    assert [(e["id"], e["type"]) for e in body] == [
        ("id-1", "status"),
        ("id-2", "fly" if isinstance(urgent, FlyEvent) else "status"),
    ]


@pytest.mark.parametrize("code", [404, 405])
async def test_no_many_task_endpoint_falls_back_per_envelope_in_order(code: int) -> None:
    refused = anyio.Event()

    def answer(path: str, body: Any) -> int:
        if path != "/api/v1/mesh/events":
            return 204
        refused.set()
        return code

    fake = Fake(answer)
    metrics = Metrics("memory")
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, metrics, default_url=gw, buffer=100)
        lanes = [client.open(gw, f"id-{k}") for k in range(3)]
        for i in range(4):
            for lane in lanes:
                lane.put(fly({"i": i}, seq=i))
        with anyio.fail_after(5):
            await refused.wait()  # the first batch is in flight
            for i in range(4, 6):
                for lane in lanes:
                    lane.put(fly({"i": i}, seq=i))
            for lane in lanes:
                lane.close()
            await client.wait_idle()
    multi = [p for p, _ in fake.calls if p == "/api/v1/mesh/events"]
    assert len(multi) == 1  # learned once
    for k in range(3):
        got = [
            e["data"]["i"]
            for p, b in fake.calls
            if p == f"/api/v1/mesh/id-{k}/events"
            for e in (b if isinstance(b, list) else [b])
        ]
        assert got == list(range(6))
    assert counter(metrics, "fly_forwarded") == 18 and counter(metrics, "fly_dropped") == 0


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("http://gw:8089", True),
        ("https://gw.example/", True),
        ("file:///etc/passwd", False),
        ("http://", False),
        ("gopher://x", False),
        ("", False),
        (42, False),
    ],
)
def test_ssrf_guard(value: object, ok: bool) -> None:
    assert (safe_gateway_url(value) is not None) == ok


async def test_events_are_typed_on_the_wire() -> None:
    fake = Fake(lambda path, body: 204)
    await run_client(fake, flys(1))
    assert fake.calls == [("/api/v1/mesh/id-1/events", {"type": "fly", "data": {"i": 0}, "seq": 0})]


async def test_lease_keeper_extends_the_current_delivery_only() -> None:
    from asya_mesh.transports.memory import MemoryTransport
    from asya_sidecar.lease import LeaseKeeper

    extended = anyio.Event()
    seconds: list[float] = []

    def on_extend(s: float) -> None:
        seconds.append(s)
        extended.set()

    t = MemoryTransport(on_extend=on_extend)
    keeper = LeaseKeeper(0.15)
    with anyio.fail_after(5):
        await t.send("q", b"")
        d = await t.receive("q", wait=1)
        assert d is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.run)
            while keeper.ticks < 2:  # noqa: ASYNC110 - idle periods: nothing to extend
                await anyio.sleep(0.01)
            assert seconds == []
            keeper.delivery = d
            await extended.wait()
            tg.cancel_scope.cancel()
    assert seconds[-1] == 0.15


async def test_a_gateway_without_the_event_stream_gets_every_batch_by_post() -> None:
    fake = Fake(lambda path, body: 404 if body is None else 204)  # the upgrade: 404
    metrics = Metrics("memory")
    async with fake_gateway(fake) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, metrics, default_url=gw, buffer=100, event_stream=True)
        for n in range(3):  # batches one after another
            lane = client.open(gw, f"id-{n}")
            lane.put(fly({"i": n}, seq=0))
            lane.close()
            with anyio.fail_after(5):
                await client.wait_idle()
        await client.close_streams()
        tg.cancel_scope.cancel()
    upgrades = [path for path, body in fake.calls if body is None]
    assert upgrades == ["/api/v1/mesh/events"]  # asked once, not again for a while
    posted = [
        e
        for _, body in fake.calls
        if body is not None
        for e in (body if isinstance(body, list) else [body])
    ]
    assert [e["data"]["i"] for e in posted] == [0, 1, 2]
    assert counter(metrics, "fly_forwarded") == 3
    assert counter(metrics, "gateway_streamed") == 0


async def test_end_actor_reports_share_a_batch_and_return_once_it_is_answered() -> None:
    got, release = anyio.Event(), anyio.Event()
    posts: list[Any] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        got.set()
        await release.wait()  # the gateway holds the answer: no report may return yet
        return httpx.Response(204)

    done: list[int] = []
    async with fake_gateway(answer) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, Metrics("memory"), default_url=gw, buffer=100)

        async def report(i: int) -> None:
            end = status_event("succeeded", id=f"id-{i}", status="succeeded")
            await client.report(gw, f"id-{i}", end)
            done.append(i)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as reports:
                for i in range(5):  # an end actor's concurrent workers
                    reports.start_soon(report, i)
                await got.wait()
                assert done == []
                release.set()
        tg.cancel_scope.cancel()
    assert sorted(done) == [0, 1, 2, 3, 4]
    ids = sorted(e["id"] for body in posts for e in (body if isinstance(body, list) else [body]))
    assert ids == [f"id-{i}" for i in range(5)]
    assert len(posts) < 5  # shared: not one request per report
