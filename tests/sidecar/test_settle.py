"""Ack/requeue decisions of `Sidecar.settle`, in process with a fake transport."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from asya_mesh.transports import Delivery, Transport
from asya_mesh.transports.errors import TransportError
from asya_sidecar.config import SidecarConfig
from asya_sidecar.metrics import Metrics
from asya_sidecar.worker import Sidecar

pytestmark = pytest.mark.anyio

BODY = json.dumps(
    {"id": "p-1", "route": {"prev": [], "curr": "a", "next": ["bad"]}, "payload": 1}
).encode()


class FakeDelivery(Delivery):
    def __init__(self, attempt: int) -> None:
        self.body, self.message_id, self.attempt = BODY, "m", attempt
        self.outcome: tuple[str, float] | None = None

    async def ack(self) -> None:
        self.outcome = ("ack", 0.0)

    async def requeue(self, delay: float = 0.0) -> None:
        self.outcome = ("requeue", delay)

    async def extend(self, seconds: float) -> None: ...


class FakeTransport(Transport):
    max_message_bytes = 1 << 20

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, queue: str, body: bytes, *, delay: float = 0.0) -> None:
        if queue.endswith("-bad"):
            raise TransportError("queue name rejected")
        self.sent.append((queue, body))

    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        return None

    async def depths(self) -> dict[str, int]:
        return {}

    async def aclose(self) -> None: ...


def sidecar(t: Transport) -> Sidecar:
    return Sidecar(SidecarConfig(actor_name="a"), t, None, Metrics("fake"))  # type: ignore[arg-type]


async def failing_send(sc: Sidecar) -> None:
    await sc.transport.send("asya-default-bad", b"x")


@pytest.mark.parametrize(("attempt", "expect"), [(1, "requeue"), (4, "requeue"), (5, "ack")])
async def test_outputs_that_keep_failing_end_in_sump(attempt: int, expect: str) -> None:
    t = FakeTransport()
    sc = sidecar(t)
    d = FakeDelivery(attempt)
    with anyio.fail_after(5):
        await sc.settle(d, lambda: failing_send(sc))
    assert d.outcome is not None and d.outcome[0] == expect
    if expect == "ack":
        ((queue, body),) = t.sent
        assert queue == "asya-default-x-sump"
        out = json.loads(body)
        assert out["id"] == "p-1" and "failed 5 times" in out["payload"]["error"]
        assert out["payload"]["original_payload"] == 1
    else:
        assert d.outcome == ("requeue", 1.0) and not t.sent


async def test_success_acks_and_shutdown_cancel_requeues_untouched() -> None:
    sc = sidecar(FakeTransport())
    d = FakeDelivery(1)

    async def ok() -> None:
        pass

    await sc.settle(d, ok)
    assert d.outcome == ("ack", 0.0)
    d2 = FakeDelivery(1)
    started = anyio.Event()

    async def slow() -> None:
        started.set()
        await anyio.sleep(60)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sc.settle, d2, slow)
            await started.wait()
            sc.abort_inflight()
    assert d2.outcome == ("requeue", 0.0)


async def test_too_large_output_goes_to_sump_at_once() -> None:
    from asya_mesh.transports.errors import MessageTooLarge

    t = FakeTransport()
    sc = sidecar(t)
    d = FakeDelivery(1)

    async def too_large() -> None:
        raise MessageTooLarge("message of 300000 bytes exceeds the SQS limit of 262144 bytes")

    with anyio.fail_after(5):
        await sc.settle(d, too_large)
    assert d.outcome == ("ack", 0.0)  # permanent: no redelivery, even at the first attempt
    ((queue, body),) = t.sent
    assert queue == "asya-default-x-sump"
    err = json.loads(body)["payload"]["error"]
    assert "too large" in err and "limit of 262144 bytes" in err


async def test_last_output_is_sent_with_the_ack() -> None:
    from asya_runtime.wire import Envelope, Route
    from asya_sidecar.routing import Outgoing

    acked_with: list[list[tuple[str, bytes]]] = []

    class T(FakeTransport):
        async def send_then_ack(self, messages: Any, delivery: Delivery) -> None:
            acked_with.append(list(messages))
            await delivery.ack()

    sc = sidecar(T())
    d = FakeDelivery(1)
    out = Outgoing(
        actor="b",
        envelope=Envelope(id="p-1", route=Route(prev=["a"], curr="b", next=[]), payload=2),
        kind="emit",
    )

    async def last() -> Outgoing:
        return out

    await sc.settle(d, last)
    assert d.outcome == ("ack", 0.0)
    assert [q for q, _ in acked_with[0]] == ["asya-default-b"]


async def test_lost_lease_is_not_requeued_and_stops_extension() -> None:
    from asya_mesh.transports import LeaseLost
    from asya_sidecar.worker import _LeaseKeeper

    sc = sidecar(FakeTransport())
    d = FakeDelivery(1)

    async def lost() -> None:
        raise LeaseLost("lease lapsed and it was redelivered")

    await sc.settle(d, lost)
    assert d.outcome is None  # another consumer settles it

    class Lost(FakeDelivery):
        extends = 0

        async def extend(self, seconds: float) -> None:
            self.extends += 1
            raise LeaseLost("gone")

    keeper = _LeaseKeeper(0.06)
    ld = Lost(1)
    keeper.delivery = ld
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.run)
            await anyio.sleep(0.5)  # ~20 extension periods
            tg.cancel_scope.cancel()
    assert ld.extends == 1


async def test_invoke_not_delivered_requeues_untouched() -> None:
    from asya_sidecar.runtime_client import InvokeNotDelivered

    t = FakeTransport()
    sc = sidecar(t)
    d = FakeDelivery(1)

    async def runtime_gone() -> None:
        raise InvokeNotDelivered("runtime closed before the invoke")

    with anyio.fail_after(5):
        await sc.settle(d, runtime_gone)
    assert d.outcome == ("requeue", 0.0) and not t.sent  # nothing to sump, nothing acked
