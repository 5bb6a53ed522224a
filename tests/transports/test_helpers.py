"""Unit and focused tests: routing keys, attempts, SQS body encoding, doorbells, sqlite leases,
SQS delay chaining end to end, and the package's public names."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

import asya_mesh.transports as transports
from asya_mesh.transports import LeaseLost, TransportConfig, open_transport
from asya_mesh.transports.doorbell import Bell, Ringer, bell_directory
from asya_mesh.transports.rabbitmq_keys import attempt_of, routing_key
from asya_mesh.transports.sqs import SqsTransport, encode_body

from .conftest import config_for, require_broker


def test_public_names() -> None:
    assert set(transports.__all__) >= {
        "Delivery",
        "Transport",
        "TransportConfig",
        "open_transport",
        "queue_name",
        "LeaseLost",
    }
    for name in transports.__all__:
        assert hasattr(transports, name)


@pytest.mark.anyio
async def test_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="nats"):
        await open_transport(TransportConfig(kind="nats"))


def test_config_from_env_reads_the_transport_variables() -> None:
    cfg = TransportConfig.from_env(
        {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_PREFETCH": "4", "ASYA_NAMESPACE": "prod"}
    )
    assert (cfg.kind, cfg.rabbitmq_prefetch, cfg.namespace) == ("rabbitmq", 4, "prod")


def test_routing_key_strips_the_namespace_prefix_like_upstream() -> None:
    assert routing_key("default", "asya-default-tokens") == "tokens"
    assert routing_key("default", "asya-default-x-sink") == "x-sink"
    assert routing_key("prod", "asya-default-tokens") == "asya-default-tokens"


def test_attempt_counts_our_requeues_then_the_brokers_redeliveries() -> None:
    assert attempt_of({}, redelivered=False) == 1
    assert attempt_of({}, redelivered=True) == 2
    assert attempt_of({"x-asya-attempt": 3}, redelivered=False) == 4
    assert attempt_of({"x-delivery-count": 2}, redelivered=True) == 3


@given(st.binary(max_size=300))
def test_sqs_body_encoding_round_trips(body: bytes) -> None:
    import base64

    text, attrs = encode_body(body)
    decoded = base64.b64decode(text) if attrs else text.encode()
    assert decoded == body


def test_json_bodies_travel_as_plain_text_on_sqs() -> None:
    assert encode_body(b'{"id": "x", "payload": "\xc3\xa9"}') == ('{"id": "x", "payload": "é"}', {})


def test_bell_directory_is_short_enough_for_socket_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / "q.db"
    assert len(str(bell_directory(str(deep)))) <= 80
    assert bell_directory(str(deep)) == bell_directory(str(deep))  # same in every process
    assert bell_directory("/tmp/q.db") == Path("/tmp/q.db.bells")


@pytest.mark.anyio
async def test_a_ring_between_look_and_wait_is_not_lost(short_tmp: Path) -> None:
    bell = Bell(short_tmp, "q")
    ringer = Ringer(short_tmp)
    try:
        # The receiver looked at the queue (empty); a sender commits and rings before the
        # receiver waits; a ring for another queue does not count.
        ringer.ring("q")
        ringer.ring("other")
        with anyio.fail_after(5):
            await bell.wait(3)  # returns at once: the datagram waited in the socket
            with anyio.move_on_after(0.3) as idle:
                await bell.wait(3)  # drained: this one really waits
            assert idle.cancelled_caught
    finally:
        bell.close()
        ringer.close()


@pytest.mark.anyio
async def test_bell_wakes_one_waiter_per_ring_and_pass_on_wakes_the_next(short_tmp: Path) -> None:
    bell = Bell(short_tmp, "q")
    ringer = Ringer(short_tmp)
    woken: list[int] = []
    first = anyio.Event()

    async def waiter(i: int) -> None:
        await bell.wait(10)
        woken.append(i)
        first.set()

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(waiter, i)
                await anyio.wait_all_tasks_blocked()
                ringer.ring("q")
                await first.wait()
                await anyio.sleep(0.1)  # give a wrongly woken herd time to show up
                assert len(woken) == 1, "a ring woke the whole herd"
                bell.pass_on()  # the woken receiver leased a message: one more looks
                bell.pass_on()
            assert sorted(woken) == [0, 1, 2]
            bell.pass_on()  # nobody waits: kept for the next wait
            with anyio.fail_after(1):
                await bell.wait(10)
    finally:
        bell.close()
        ringer.close()


@pytest.mark.anyio
async def test_ringing_a_dead_receivers_bell_removes_it(short_tmp: Path) -> None:
    bell = Bell(short_tmp, "q")
    bell._sock.close()  # as if its process was SIGKILLed: the file stays, nobody listens
    ringer = Ringer(short_tmp)
    try:
        ringer.ring("q")
        assert not bell.path.exists()
    finally:
        ringer.close()


@pytest.mark.anyio
async def test_sqlite_ack_after_the_lease_went_elsewhere_raises_lease_lost(
    short_tmp: Path,
) -> None:
    a = await open_transport(config_for("sqlite", short_tmp / "q.db", lease_seconds=0.5))
    b = await open_transport(config_for("sqlite", short_tmp / "q.db", lease_seconds=30))
    try:
        with anyio.fail_after(10):
            await a.send("q", b"x")
            late = await a.receive("q", wait=1)
            assert late is not None
            taken = await b.receive("q", wait=5)
            assert taken is not None and taken.attempt == 2
            with pytest.raises(LeaseLost):
                await late.ack()
            with pytest.raises(LeaseLost):
                await late.extend(10)
            with pytest.raises(LeaseLost):  # all or nothing: no output without the ack
                await a.send_then_ack([("out", b"dup")], late)
            assert await a.receive("out", wait=0.2) is None
            await taken.ack()
            assert (await a.depths())["q"] == 0
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.anyio
async def test_sqlite_wakes_a_receiver_at_the_due_time_without_a_ring(short_tmp: Path) -> None:
    """The receiver learns the next due time from the queue and wakes for it by itself."""
    t = await open_transport(config_for("sqlite", short_tmp / "q.db"))
    try:
        with anyio.fail_after(10):
            await t.send("q", b"soon", delay=0.6)
            start = time.monotonic()
            d = await t.receive("q", wait=5)
            assert d is not None and time.monotonic() - start >= 0.5
    finally:
        await t.aclose()


@pytest.mark.anyio
async def test_sqs_delays_longer_than_one_hop_are_chained(short_tmp: Path) -> None:
    """With the hop cap lowered to 1 s, a 3 s delay needs three hops and still arrives, late
    rather than early, with its attempt count intact."""
    require_broker("sqs")
    t = await open_transport(config_for("sqs", short_tmp / "unused.db"))
    assert isinstance(t, SqsTransport)
    t.max_delay_hop = 1
    queue = f"asya-conformance-chain{uuid.uuid4().hex[:8]}"
    try:
        with anyio.fail_after(30):
            sent = time.monotonic()
            await t.send(queue, b"chained", delay=3)
            assert await t.receive(queue, wait=1.5) is None
            d = await t.receive(queue, wait=10)
            assert d is not None
            assert (d.body, d.attempt) == (b"chained", 1)
            assert time.monotonic() - sent >= 2.75
            await d.ack()
    finally:
        await t.aclose()


@pytest.mark.anyio
async def test_sqlite_busy_consumer_does_not_starve_other_tasks(short_tmp: Path) -> None:
    """Statements may run on the event loop, but every call still yields to other tasks."""
    t = await open_transport(config_for("sqlite", short_tmp / "q.db"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    try:
        with anyio.fail_after(20):
            await t.send_many([("q", b"x")] * 200)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                for _ in range(200):
                    d = await t.receive("q", wait=5)
                    assert d is not None
                    await d.ack()
                tg.cancel_scope.cancel()
        assert ticks >= 200
    finally:
        await t.aclose()


def test_namespaced_routing_keys_are_the_queue_name() -> None:
    assert routing_key("default", "asya-default-tokens", "namespaced") == "asya-default-tokens"
    keys = {routing_key(ns, f"asya-{ns}-echo", "namespaced") for ns in ("a", "b")}
    assert len(keys) == 2


def test_config_from_env_reads_the_routing_key_layout() -> None:
    assert TransportConfig().rabbitmq_routing_keys == "namespaced"
    cfg = TransportConfig.from_env({"ASYA_RABBITMQ_ROUTING_KEYS": "upstream"})
    assert cfg.rabbitmq_routing_keys == "upstream"


@pytest.mark.anyio
async def test_an_unknown_routing_key_layout_is_refused_naming_the_variable() -> None:
    cfg = TransportConfig(kind="rabbitmq", rabbitmq_routing_keys="flat")
    with pytest.raises(ValueError, match=r"ASYA_RABBITMQ_ROUTING_KEYS.*'flat'"):
        await open_transport(cfg)
