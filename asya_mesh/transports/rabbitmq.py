"""RabbitMQ transport (aio-pika): upstream Asya's topology plus delays that really wait.

Topology: a durable topic exchange (`asya`), one durable queue per actor bound with routing key
= the queue name (`asya-{namespace}-{actor}`: no envelope crosses a namespace), or with
upstream's layout (`rabbitmq_routing_keys="upstream"`) the queue name minus
`asya-{namespace}-`. Persistent messages, publisher confirms pipelined on one channel. Delays go
through a headers exchange `{exchange}.delay` into per-bucket TTL queues
`asya-{ns}-delay-{ms}` that dead-letter back into the topic exchange with the original
routing key. Knows nothing about envelopes.
"""

from __future__ import annotations

import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import aio_pika
import aiormq
import anyio
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from .base import Delivery, Transport
from .delays import delay_bucket_ms
from .errors import QueueMissing, TransportError
from .rabbitmq_keys import ATTEMPT_HEADER, ROUTING_KEY_LAYOUTS, attempt_of, routing_key

#: Below the broker's default `max_message_size` (128 MiB), leaving room for headers.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: How long `send` keeps retrying while the broker is unreachable before raising.
SEND_RETRY_SECONDS: Final = 30.0
RECONNECT_INTERVAL_SECONDS: Final = 1.0
#: Which delay queue a delayed copy goes to. Not `x-`-prefixed: the headers exchange ignores
#: such keys when matching, and the value names the queue (so namespaces never share one).
DELAY_HEADER: Final = "asya-delay-queue"

_BROKER_ERRORS = (
    aio_pika.exceptions.AMQPException,
    aio_pika.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
)


@contextlib.asynccontextmanager
async def _mapped(what: str) -> AsyncIterator[None]:
    """Map broker exceptions to `TransportError` at the boundary, chained."""
    try:
        yield
    except _BROKER_ERRORS as exc:
        raise TransportError(f"RabbitMQ {what} failed: {exc!r}") from exc


def _channel_dead(message: AbstractIncomingMessage) -> bool:
    try:
        return bool(message.channel.is_closed)
    except aio_pika.exceptions.ChannelInvalidStateError:
        return True


class RabbitMQDelivery(Delivery):
    __slots__ = ("_message", "_queue", "_transport", "attempt", "body", "message_id")

    def __init__(self, transport: RabbitMQTransport, queue: str, message: AbstractIncomingMessage):
        self._transport = transport
        self._queue = queue
        self._message = message
        self.body = message.body
        self.message_id = message.message_id or ""
        self.attempt = attempt_of(dict(message.headers or {}), bool(message.redelivered))

    async def ack(self) -> None:
        async with _mapped("ack"):
            await self._message.ack()

    async def requeue(self, delay: float = 0.0) -> None:
        # A copy carrying the attempt count, then ack: exact `attempt` on classic queues and a
        # real delay. A crash between the two duplicates the message (at-least-once), never loses.
        headers = dict(self._message.headers or {})
        headers[ATTEMPT_HEADER] = self.attempt
        await self._transport._publish(self._queue, self.body, delay, headers, self.message_id)
        await self.ack()

    async def extend(self, seconds: float) -> None:
        """No-op: RabbitMQ has no lease timeout; the message is ours until ack or disconnect."""


class RabbitMQTransport(Transport):
    """Open with `await RabbitMQTransport.open(config, prefetch=n)`."""

    max_message_bytes = MAX_MESSAGE_BYTES
    label = "RabbitMQ"

    def __init__(
        self,
        connection: AbstractRobustConnection,
        namespace: str,
        exchange: str,
        layout: str = "namespaced",
    ):
        self._connection = connection
        self._namespace = namespace
        self._layout = layout
        self._exchange_name = exchange
        self._publish_channel: AbstractChannel
        self._consume_channel: AbstractChannel
        self._exchange: AbstractExchange
        self._delay_exchange: AbstractExchange
        self._declared: dict[str, AbstractQueue] = {}
        self._seen: set[str] = set()  # queues a passive declare found (they rarely vanish)
        self._declare_lock = anyio.Lock()
        self._consume_lock = anyio.Lock()
        # Per queue, deliveries pushed by the broker and not yet taken by `receive`. Bounded by
        # the channel's prefetch: the broker sends no more until some are acked.
        self._buffers: dict[str, collections.deque[AbstractIncomingMessage]] = {}
        self._arrived: dict[str, anyio.Event] = {}

    @classmethod
    async def open(cls, config: Any, *, prefetch: int) -> RabbitMQTransport:
        layout = getattr(config, "rabbitmq_routing_keys", "namespaced")
        if layout not in ROUTING_KEY_LAYOUTS:
            raise ValueError(
                f"ASYA_RABBITMQ_ROUTING_KEYS: unknown layout {layout!r} "
                f"(one of {', '.join(ROUTING_KEY_LAYOUTS)})"
            )
        try:
            connection = await aio_pika.connect_robust(
                config.rabbitmq_url, reconnect_interval=RECONNECT_INTERVAL_SECONDS
            )
        except (*_BROKER_ERRORS, OSError) as exc:
            raise TransportError(f"cannot connect to RabbitMQ: {exc!r}") from exc
        self = cls(connection, config.namespace, config.rabbitmq_exchange, layout)
        async with _mapped("setup"):
            self._publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._consume_channel = await connection.channel()
            await self._consume_channel.set_qos(prefetch_count=prefetch)
            self._exchange = await self._publish_channel.declare_exchange(
                config.rabbitmq_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            self._delay_exchange = await self._publish_channel.declare_exchange(
                f"{config.rabbitmq_exchange}.delay", aio_pika.ExchangeType.HEADERS, durable=True
            )
        return self

    async def _declare(self, queue: str) -> AbstractQueue:
        declared = self._declared.get(queue)
        if declared is not None:
            return declared
        async with self._declare_lock, _mapped(f"declaring {queue!r}"):
            if queue not in self._declared:
                q = await self._publish_channel.declare_queue(queue, durable=True)
                await q.bind(self._exchange, self._key(queue))
                self._declared[queue] = q
        return self._declared[queue]

    def _key(self, queue: str) -> str:
        return routing_key(self._namespace, queue, self._layout)

    async def declare(self, queue: str) -> None:
        await self._declare(queue)

    async def exists(self, queue: str) -> bool:
        """A passive declare on a channel of its own (a miss closes the channel it ran on)."""
        if queue in self._declared or queue in self._seen:
            return True
        async with _mapped(f"checking {queue!r}"):
            channel = await self._connection.channel()
            try:
                await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return False
            finally:
                with contextlib.suppress(*_BROKER_ERRORS):
                    await channel.close()
        self._seen.add(queue)
        return True

    async def _require(self, queues: Iterable[str]) -> None:
        for queue in dict.fromkeys(queues):
            if not await self.exists(queue):
                raise self.missing(queue)

    async def _declare_delay_queue(self, bucket_ms: int) -> str:
        name = f"asya-{self._namespace}-delay-{bucket_ms}"
        if name in self._declared:
            return name
        async with self._declare_lock, _mapped(f"declaring {name!r}"):
            if name not in self._declared:
                q = await self._publish_channel.declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-message-ttl": bucket_ms,
                        # Dead-lettered with its original routing key: the target actor's.
                        "x-dead-letter-exchange": self._exchange_name,
                    },
                )
                await q.bind(
                    self._delay_exchange,
                    arguments={"x-match": "all", DELAY_HEADER: name},
                )
                self._declared[name] = q
        return name

    async def send(
        self, queue: str, body: bytes, *, delay: float = 0.0, must_exist: bool = False
    ) -> None:
        self.check_size(body)
        if must_exist:
            await self._require([queue])
        await self._publish(queue, body, delay, {}, uuid.uuid4().hex, must_exist=must_exist)

    async def send_many(
        self,
        messages: Iterable[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        must_exist: bool = False,
    ) -> None:
        """Publish all at once and wait for every confirm (pipelined, not one round trip each)."""
        batch = list(messages)
        for _, body in batch:
            self.check_size(body)
        if must_exist:  # before any publish: a missing queue sends nothing
            await self._require(q for q, _ in batch)
        failures: list[TransportError] = []

        async def publish(queue: str, body: bytes) -> None:
            try:
                await self._publish(queue, body, delay, {}, uuid.uuid4().hex, must_exist=must_exist)
            except TransportError as exc:
                failures.append(exc)

        # Tasks bounded by the caller's batch (one envelope's outputs). On failure the others
        # may be confirmed: at least once, as documented in `Transport.send_many`.
        async with anyio.create_task_group() as tg:
            for queue, body in batch:
                tg.start_soon(publish, queue, body)
        if failures:
            missing = [f for f in failures if isinstance(f, QueueMissing)]
            raise (missing or failures)[0]

    async def _publish(
        self,
        queue: str,
        body: bytes,
        delay: float,
        headers: dict[str, Any],
        message_id: str,
        *,
        must_exist: bool = False,
    ) -> None:
        """Publish and wait for the broker's confirm, retrying while the connection recovers.

        `must_exist`: never declare `queue`; a queue deleted since `exists` looked comes back
        as a basic.return (every publish is mandatory), raised as `QueueMissing`.
        """
        give_up = time.monotonic() + SEND_RETRY_SECONDS
        backoff = 0.1
        while True:
            try:
                if not must_exist:
                    await self._declare(queue)
                exchange = self._exchange
                if delay > 0:
                    delay_queue = await self._declare_delay_queue(delay_bucket_ms(delay))
                    headers = {**headers, DELAY_HEADER: delay_queue}
                    exchange = self._delay_exchange
                message = aio_pika.Message(
                    body,
                    headers=headers,
                    message_id=message_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                try:
                    async with _mapped(f"publishing to {queue!r}"):
                        # Mandatory: an unroutable message comes back (basic.return), never
                        # silently dropped.
                        await exchange.publish(message, self._key(queue), mandatory=True)
                except TransportError as exc:
                    if not isinstance(exc.__cause__, aiormq.exceptions.PublishError):
                        raise
                    # Deleted behind our back: forget it (a plain send declares it again).
                    self._seen.discard(queue)
                    self._declared.pop(queue, None)
                    if must_exist:
                        raise QueueMissing(
                            f"queue {queue!r} does not exist (the broker returned the message)"
                        ) from exc
                    raise
                return
            except QueueMissing:
                raise
            except TransportError:
                # Unconfirmed: maybe published, maybe not. Retrying may duplicate, never lose.
                if time.monotonic() + backoff > give_up:
                    raise
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _consume(self, queue: str) -> None:
        """Start the broker pushing `queue`'s messages into a buffer (once; again if it failed)."""
        if queue in self._buffers:
            return
        async with self._consume_lock:
            if queue in self._buffers:
                return
            buffer: collections.deque[AbstractIncomingMessage] = collections.deque()
            self._arrived[queue] = anyio.Event()

            async def on_message(message: AbstractIncomingMessage) -> None:
                buffer.append(message)
                self._arrived[queue].set()

            await self._declare(queue)
            async with _mapped(f"consuming {queue!r}"):
                q = await self._consume_channel.declare_queue(queue, durable=True)
                # The robust channel re-registers this consumer after a reconnect.
                await q.consume(on_message, no_ack=False)
            self._buffers[queue] = buffer

    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        await self._consume(queue)
        buffer = self._buffers[queue]
        with anyio.move_on_after(max(wait, 0.0)):
            while True:
                while buffer:
                    message = buffer.popleft()
                    if _channel_dead(message):
                        continue  # from a connection that died: the broker redelivers it
                    return RabbitMQDelivery(self, queue, message)
                arrived = self._arrived[queue]
                if arrived.is_set():  # already consumed by whoever it woke: wait for the next
                    arrived = self._arrived[queue] = anyio.Event()
                await arrived.wait()
        return None

    async def depths(self) -> dict[str, int]:
        """Ready messages of the queues this transport declared (RabbitMQ hides the unacked)."""
        out: dict[str, int] = {}
        async with _mapped("depths"):
            for name in sorted(self._declared):
                underlay = await self._publish_channel.get_underlay_channel()
                ok = await underlay.queue_declare(name, passive=True)
                out[name] = ok.message_count or 0
        return out

    async def aclose(self) -> None:
        # Unacked deliveries go back to their queue (redelivered=True) when the channel closes.
        with anyio.CancelScope(shield=True), contextlib.suppress(*_BROKER_ERRORS):
            await self._connection.close()


__all__ = [
    "DELAY_HEADER",
    "MAX_MESSAGE_BYTES",
    "RECONNECT_INTERVAL_SECONDS",
    "SEND_RETRY_SECONDS",
    "RabbitMQDelivery",
    "RabbitMQTransport",
]
