"""The gateway client in process, against `httpx.MockTransport`: fallbacks, drops, the guard."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from asya_mesh.events import Event, StatusData, StatusEvent
from asya_sidecar.gateway import GatewayClient, safe_gateway_url
from asya_sidecar.metrics import Metrics
from asya_sidecar.reports import fly

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
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http,
        anyio.create_task_group() as tg,
    ):
        client = GatewayClient(http, tg, metrics, default_url="http://gw", buffer=buffer)
        stream = client.open("http://gw", "id-1")
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


async def test_full_buffer_drops_newest_and_counts() -> None:
    fake = Fake(lambda path, body: 204)
    m = await run_client(fake, flys(10), buffer=4)
    got = [e["data"]["i"] for _, b in fake.calls for e in (b if isinstance(b, list) else [b])]
    assert got == [0, 1, 2, 3]  # order kept, overflow dropped (at-most-once)
    assert counter(m, "fly_dropped") == 6


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
    from asya_mesh.transports import Delivery
    from asya_sidecar.worker import LeaseKeeper

    class D(Delivery):
        body, message_id, attempt = b"", "m", 1

        def __init__(self) -> None:
            self.extended = anyio.Event()
            self.seconds = 0.0

        async def ack(self) -> None: ...

        async def requeue(self, delay: float = 0.0) -> None: ...

        async def extend(self, seconds: float) -> None:
            self.seconds = seconds
            self.extended.set()

    keeper = LeaseKeeper(0.15)
    d = D()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.run)
            while keeper.ticks < 2:  # noqa: ASYNC110 - idle periods: nothing to extend
                await anyio.sleep(0.01)
            assert d.seconds == 0.0
            keeper.delivery = d
            await d.extended.wait()
            tg.cancel_scope.cancel()
    assert d.seconds == 0.15
