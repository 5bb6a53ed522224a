"""RabbitMQ specifics: two namespaces on one broker and exchange never cross (issue 14); a queue
deleted behind the transport's back is missing for a `must_exist` send."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asya_mesh.transports import QueueMissing, Transport, open_transport

from .conftest import RABBITMQ_URL, config_for, require_broker

pytestmark = [pytest.mark.anyio, pytest.mark.broker]


@pytest.fixture
async def pair(
    request: pytest.FixtureRequest, sqlite_path: Path
) -> AsyncIterator[tuple[str, str, Transport, Transport]]:
    """Namespaces `a` and `b` (fresh names), one transport each, on one shared exchange."""
    require_broker("rabbitmq")
    layout = getattr(request, "param", "namespaced")
    tag = uuid.uuid4().hex[:8]
    exchange = f"asya-ns-test-{tag}"
    opened = []
    for ns in (f"a{tag}", f"b{tag}"):
        cfg = config_for(
            "rabbitmq",
            sqlite_path,
            namespace=ns,
            rabbitmq_exchange=exchange,
            rabbitmq_routing_keys=layout,
        )
        opened.append(await open_transport(cfg))
    try:
        yield f"asya-a{tag}-echo", f"asya-b{tag}-echo", opened[0], opened[1]
    finally:
        for t in opened:
            await t.aclose()


async def test_no_envelope_crosses_a_namespace_by_default(
    pair: tuple[str, str, Transport, Transport],
) -> None:
    qa, qb, a, b = pair
    with anyio.fail_after(30):
        for t, q in ((a, qa), (b, qb)):  # both sidecars of actor `echo` are consuming
            assert await t.receive(q, wait=0) is None
        await a.send(qa, b"for a, now")
        await a.send(qa, b"for a, later", delay=1.0)  # dead-lettered with its routing key
        got = set()
        for _ in range(2):
            d = await a.receive(qa, wait=15)
            assert d is not None, "namespace a lost its own envelope"
            got.add(d.body)
            await d.ack()
        assert got == {b"for a, now", b"for a, later"}
        leaked = await b.receive(qb, wait=2.0)
        assert leaked is None, f"namespace b received a's envelope {leaked.body!r}"


@pytest.mark.parametrize("pair", ["upstream"], indirect=True)
async def test_the_upstream_layout_shares_routing_keys_across_namespaces(
    pair: tuple[str, str, Transport, Transport],
) -> None:
    """What ASYA_RABBITMQ_ROUTING_KEYS=upstream means: give each namespace its own exchange."""
    qa, qb, a, b = pair
    with anyio.fail_after(30):
        for t, q in ((a, qa), (b, qb)):
            assert await t.receive(q, wait=0) is None
        await a.send(qa, b"for a")
        for t, q in ((a, qa), (b, qb)):
            d = await t.receive(q, wait=10)
            assert d is not None and d.body == b"for a"
            await d.ack()


async def test_a_queue_deleted_behind_our_back_is_missing_for_a_must_exist_send(
    pair: tuple[str, str, Transport, Transport],
) -> None:
    """`exists` caches a hit; the mandatory publish still sees the queue gone (basic.return)."""
    import aio_pika

    qa, _, a, _ = pair
    with anyio.fail_after(30):
        await a.declare(qa)
        assert await a.exists(qa)
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(qa)
        with pytest.raises(QueueMissing, match=qa):
            await a.send(qa, b"nobody home", must_exist=True)
        assert not await a.exists(qa)
        await a.send(qa, b"a plain send declares it again")
        d = await a.receive(qa, wait=10)
        assert d is not None and d.body == b"a plain send declares it again"
        await d.ack()
