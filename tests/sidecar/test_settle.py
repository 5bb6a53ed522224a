"""The worker shell's ack/requeue with a real (in-memory) transport: what the machine decides
is carried out on the queue. The paths here need no runtime (route check, deadline, pre-flight)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from asya_mesh.transports import Delivery, LeaseLost
from asya_mesh.transports.errors import MessageTooLarge, TransportError
from asya_mesh.transports.memory import MemoryTransport
from asya_sidecar.config import SidecarConfig
from asya_sidecar.gateway import GatewayClient, gateway_client
from asya_sidecar.lease import LeaseKeeper
from asya_sidecar.metrics import Metrics
from asya_sidecar.worker import Lifecycle, Worker

from .fake_gateway import fake_gateway

pytestmark = pytest.mark.anyio

IN = "asya-default-a"
LATE = {
    "id": "p-1",
    "route": {"prev": [], "curr": "a", "next": []},
    "status": {"deadline_at": "2020-01-01T00:00:00Z"},  # -> x-sink at once, no runtime
    "payload": 1,
}


def refusing(suffix: str, error: TransportError) -> MemoryTransport:
    """The memory transport refusing sends to queues ending in `suffix` with `error` (as a
    broker rejects a queue name, or a body over its limit)."""

    def on_send(messages: list[tuple[str, bytes]], acking: Delivery | None) -> None:
        if any(q.endswith(suffix) for q, _ in messages):
            raise error

    return MemoryTransport(on_send=on_send)


@pytest.fixture
async def gw() -> AsyncIterator[GatewayClient]:
    async with gateway_client(Metrics("memory"), default_url=None, buffer=10) as client:
        yield client


async def deliver(t: MemoryTransport, env: dict[str, Any]) -> Delivery:
    await t.send(IN, json.dumps(env).encode())
    d = await t.receive(IN, wait=1)
    assert d is not None
    return d


def worker(t: MemoryTransport, gw: GatewayClient, life: Lifecycle | None = None) -> Worker:
    return Worker(SidecarConfig(actor_name="a"), t, gw, Metrics("memory"), life or Lifecycle())


async def test_outputs_that_fail_are_requeued_with_a_delay(gw: GatewayClient) -> None:
    t = refusing("x-sink", TransportError("queue name rejected"))
    with anyio.fail_after(5):
        await worker(t, gw).process(await deliver(t, LATE), None)
        assert await t.receive(IN, wait=0.3) is None  # requeued 1 s ahead, not at once
        again = await t.receive(IN, wait=2)
    assert again is not None and again.attempt == 2
    assert (await t.depths()).get("asya-default-x-sink", 0) == 0


async def test_too_large_output_goes_to_sump_at_once(gw: GatewayClient) -> None:
    t = refusing(
        "x-sink", MessageTooLarge("message of 300000 bytes exceeds the limit of 262144 bytes")
    )
    with anyio.fail_after(5):
        await worker(t, gw).process(await deliver(t, LATE), None)
        sunk = await t.receive("asya-default-x-sump", wait=1)
    assert sunk is not None and (await t.depths())[IN] == 0  # acked: no redelivery
    err = json.loads(sunk.body)["payload"]["error"]
    assert "too large" in err and "limit of 262144 bytes" in err


async def test_last_output_is_sent_with_the_ack(gw: GatewayClient) -> None:
    acked_with: list[list[tuple[str, bytes]]] = []

    def on_send(messages: list[tuple[str, bytes]], acking: Delivery | None) -> None:
        if acking is not None:
            acked_with.append(messages)

    t = MemoryTransport(on_send=on_send)
    with anyio.fail_after(5):
        await worker(t, gw).process(await deliver(t, LATE), None)
    assert [q for q, _ in acked_with[0]] == ["asya-default-x-sink"]
    assert (await t.depths())[IN] == 0


async def test_lost_lease_is_neither_acked_nor_requeued(gw: GatewayClient) -> None:
    t = MemoryTransport(lease_seconds=0.05)
    other = MemoryTransport(t.queues)
    with anyio.fail_after(5):
        d = await deliver(t, LATE)
        theirs = await other.receive(IN, wait=2)  # our lease lapses; another consumer has it
        assert theirs is not None and theirs.attempt == 2
        await worker(t, gw).process(d, None)
        assert (await t.depths()).get("asya-default-x-sink", 0) == 0  # sent nothing
        await theirs.ack()  # it is still theirs to settle


async def test_shutdown_grace_over_requeues_untouched() -> None:
    asked = anyio.Event()

    async def hanging_gateway(request: httpx.Request) -> httpx.Response:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError

    t = MemoryTransport()
    life = Lifecycle()
    metrics = Metrics("memory")
    async with fake_gateway(hanging_gateway) as (gw, http), anyio.create_task_group() as tg:
        gwc = GatewayClient(http, tg, metrics, default_url=None, buffer=10, preflight_timeout=60)
        env = LATE | {"status": {}, "headers": {"x-asya-gateway-url": gw}}
        body = json.dumps(env).encode()
        w = Worker(SidecarConfig(actor_name="a"), t, gwc, metrics, life)
        with anyio.fail_after(5):
            await t.send(IN, body)
            d = await t.receive(IN, wait=1)
            assert d is not None
            async with anyio.create_task_group() as inner:
                inner.start_soon(w.process, d, None)
                await asked.wait()  # in flight: waiting on the pre-flight
                life.abort_inflight()
            back = await t.receive(IN, wait=1)
        tg.cancel_scope.cancel()
    assert back is not None and back.body == body and back.attempt == 2


async def test_lease_keeper_stops_extending_a_lost_lease() -> None:
    extends: list[float] = []
    t = MemoryTransport(on_extend=extends.append)
    keeper = LeaseKeeper(0.06)
    with anyio.fail_after(5):
        ld = await deliver(t, LATE)
    t.lapse(ld)  # another consumer may have it now: extending raises LeaseLost
    with pytest.raises(LeaseLost):
        await ld.ack()
    keeper.delivery = ld
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.run)
            while keeper.ticks < 20:  # noqa: ASYNC110 - polling the keeper's own counter
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert len(extends) == 1
