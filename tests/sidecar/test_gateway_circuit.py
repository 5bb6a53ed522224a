"""The gateway client under trouble, in process: the circuit breaker, the pre-flight budget and
its own pool."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from asya_sidecar.circuit import Circuit
from asya_sidecar.gateway import GatewayClient
from asya_sidecar.metrics import Metrics
from asya_sidecar.reports import fly

from .fake_gateway import fake_gateway

pytestmark = pytest.mark.anyio


def counter(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"asya_actor_{name}_total") or 0.0


def flys(n: int, start: int = 0) -> list[Any]:
    return [fly({"i": i}, seq=i) for i in range(start, start + n)]


def test_circuit_opens_after_threshold_and_probes_one_at_a_time() -> None:
    c = Circuit(threshold=3, base=1.0, cap=4.0)
    assert not any(c.failure(0.0) for _ in range(2)) and c.allow(0.0)
    assert c.failure(0.0)  # third consecutive failure opens it (reported once)
    assert not c.allow(0.5) and c.is_open(0.5)
    assert c.allow(1.0)  # cooldown over: one probe ...
    assert not c.allow(1.0)  # ... and only one
    assert not c.failure(1.0)  # failed probe: open again, cooldown doubled
    assert not c.allow(2.5) and c.allow(3.0)
    c.failure(3.0)
    assert c.cooldown == 4.0  # capped
    assert c.allow(7.0) and not c.failure(7.0)
    assert c.cooldown == 4.0 and not c.allow(10.9)
    assert c.allow(11.0) and c.success()  # a probe that succeeds closes it (reported once)
    assert c.allow(11.0) and not c.is_open(11.0) and c.cooldown == 1.0


def test_circuit_success_resets_the_count() -> None:
    c = Circuit(threshold=3)
    c.failure(0.0)
    c.failure(0.0)
    assert not c.success()  # it was not open
    assert not c.failure(0.0) and c.allow(0.0)


async def test_failing_gateway_opens_the_circuit_and_drops_without_trying() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500)

    metrics = Metrics("memory")
    async with fake_gateway(answer) as (gw, http), anyio.create_task_group() as tg:
        client = GatewayClient(http, tg, metrics, default_url=gw, buffer=100)
        with anyio.fail_after(10):
            for k in range(20):  # 20 envelopes, 3 FLYs each, one after the other
                stream = client.open(gw, f"id-{k}")
                for e in flys(3):
                    stream.put(e)
                stream.close()
                await client.wait_idle()  # one envelope after the other
    # 5 consecutive failures open it (1 s cooldown): the other envelopes are not even tried.
    assert len(calls) == 5, calls
    assert counter(metrics, "fly_dropped") == 60
    # No pre-flight while the circuit is open either.
    async with fake_gateway(answer) as (gw, http), anyio.create_task_group() as tg:
        client2 = GatewayClient(http, tg, metrics, default_url=gw, buffer=10)
        client2._state(gw).circuit.open_until = anyio.current_time() + 60
        assert await client2.preflight(gw, "id-x") is None
    assert len(calls) == 5


async def test_slow_preflight_is_cut_at_its_budget_and_then_skipped() -> None:
    gets = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal gets
        gets += 1
        await anyio.sleep(2.0)
        return httpx.Response(200, json={"status": "running"})

    def unused(request: httpx.Request) -> httpx.Response:
        raise AssertionError("pre-flight must use its own pool")

    async with (
        fake_gateway(unused) as (_, http),
        fake_gateway(slow) as (gw, pre),
        anyio.create_task_group() as tg,
    ):
        client = GatewayClient(
            http,
            tg,
            Metrics("memory"),
            default_url=gw,
            buffer=10,
            preflight_http=pre,
            preflight_timeout=0.1,
        )
        with anyio.fail_after(1.5):  # well under the gateway's 2 s
            assert await client.preflight(gw, "id-1") is None
            for _ in range(10):  # the slow gateway is now skipped: no wait at all
                assert await client.preflight(gw, "id-2") is None
    assert gets == 1
