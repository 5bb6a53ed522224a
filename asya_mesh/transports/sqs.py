"""Amazon SQS transport (aiobotocore): long polling, visibility as the lease, chained long delays.

SQS caps `DelaySeconds` at 15 minutes; a longer delay travels as a message attribute with the
due time, and a receiver that gets a message not yet due sends it on with the next hop of
delay and deletes the original. Credentials come from the usual AWS environment/profile chain.
Knows nothing about envelopes.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .base import Delivery, Transport
from .delays import (
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_VISIBILITY_SECONDS,
    sqs_delay_seconds,
    sqs_is_due,
    sqs_needs_chaining,
)
from .errors import MessageTooLarge, QueueMissing, TransportError

#: SQS's limit for one message (body plus attributes).
MAX_MESSAGE_BYTES: Final = 256 * 1024
DUE_AT: Final = "asya-due-at"  # epoch seconds the message becomes deliverable (chained delays)
ATTEMPT_BASE: Final = "asya-attempt-base"  # deliveries before this copy was (re)sent
ENCODING: Final = "asya-encoding"  # "base64" when the body is not SQS-safe text
#: Characters SQS accepts in a message body; anything else travels base64-encoded.
_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SHORT_POLL_PAUSE: Final = 0.05  # between short polls when less than 1 s of `wait` is left
#: How long a send, ack or lease change keeps retrying while the endpoint is unreachable
#: (past botocore's own few retries) before raising; a receive just waits out its `wait`.
OUTAGE_RETRY_SECONDS: Final = 30.0
_UNREACHABLE = (BotoConnectionError, HTTPClientError)


@contextlib.asynccontextmanager
async def _mapped(what: str) -> AsyncIterator[None]:
    """Map botocore exceptions to `TransportError` at the boundary, chained."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise TransportError(f"SQS {what} failed: {exc}") from exc


def encode_body(body: bytes) -> tuple[str, dict[str, Any]]:
    """The SQS message body for `body`, plus attributes saying how to decode it."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and not _SQS_UNSAFE.search(text):
        return text, {}
    return base64.b64encode(body).decode(), {
        ENCODING: {"DataType": "String", "StringValue": "base64"}
    }


def _attr(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else str(value["StringValue"])


def _unreachable(exc: TransportError) -> bool:
    return isinstance(exc.__cause__, _UNREACHABLE)


class SqsDelivery(Delivery):
    __slots__ = (
        "_message",
        "_queue",
        "_received_at",
        "_transport",
        "attempt",
        "body",
        "message_id",
    )

    def __init__(self, transport: SqsTransport, queue: str, message: dict[str, Any]) -> None:
        self._transport = transport
        self._queue = queue
        self._message = message
        self._received_at = time.time()
        raw = message["Body"]
        self.body = base64.b64decode(raw) if _attr(message, ENCODING) else raw.encode()
        self.message_id = message["MessageId"]
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        self.attempt = int(_attr(message, ATTEMPT_BASE) or 0) + count

    async def ack(self) -> None:
        await self._transport._delete(self._queue, self._message)

    async def requeue(self, delay: float = 0.0) -> None:
        held = time.time() - self._received_at
        if delay + held < SQS_MAX_VISIBILITY_SECONDS - 60:
            await self._transport._set_visibility(self._queue, self._message, delay)
        else:  # beyond what one visibility timeout can hold: a chained delayed copy
            await self._transport._send(
                self._queue, self.body, time.time() + delay, attempt_base=self.attempt
            )
            await self.ack()

    async def extend(self, seconds: float) -> None:
        await self._transport._set_visibility(self._queue, self._message, seconds)


class SqsTransport(Transport):
    """Open with `await SqsTransport.open(config)`; one aiobotocore client per transport."""

    max_message_bytes = MAX_MESSAGE_BYTES
    #: Longest single `DelaySeconds` hop; SQS's cap. Tests lower it to exercise chaining.
    max_delay_hop: int = SQS_MAX_DELAY_SECONDS

    def __init__(self, client: Any, stack: contextlib.AsyncExitStack, config: Any) -> None:
        self._client = client
        self._stack = stack
        # Until the endpoint has answered once, unreachable is a wrong address, not an outage:
        # fail at once (after botocore's own retries) with one line, as RabbitMQ's connect does.
        self._reached = False
        self._namespace: str = config.namespace
        self._wait_cap = max(0, min(int(config.sqs_wait_time_seconds), 20))
        lease = config.sqs_visibility_timeout or config.lease_seconds
        self._visibility = min(max(math.ceil(lease), 0), SQS_MAX_VISIBILITY_SECONDS)
        self._urls: dict[str, str] = {}
        self._url_lock = anyio.Lock()

    @classmethod
    async def open(cls, config: Any) -> SqsTransport:
        stack = contextlib.AsyncExitStack()
        # Connections for concurrent long polls plus sends; aiohttp's default pool is 10.
        # botocore's "standard" retries, 3 attempts: throttling and a blip are retried, and a
        # wrong endpoint fails in seconds (legacy mode's 5 attempts took ~12 s); outages of an
        # endpoint that answered before are ridden out by `_call`.
        aio_config = AioConfig(
            max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"}
        )
        try:
            client = await stack.enter_async_context(
                get_session().create_client(
                    "sqs",
                    region_name=config.aws_region,
                    endpoint_url=config.sqs_endpoint,
                    config=aio_config,
                )
            )
        except (ClientError, BotoCoreError) as exc:
            await stack.aclose()
            raise TransportError(f"cannot create SQS client: {exc}") from exc
        return cls(client, stack, config)

    async def _call(self, what: str, method: str, **kw: Any) -> Any:
        """`client.method(**kw)`, retried while the endpoint is unreachable (refused, reset,
        timed out) for up to `OUTAGE_RETRY_SECONDS` once it has answered; other errors, and
        an endpoint never reached, raise at once."""
        give_up = time.monotonic() + (OUTAGE_RETRY_SECONDS if self._reached else 0.0)
        backoff = 0.1
        while True:
            try:
                async with _mapped(what):
                    result = await getattr(self._client, method)(**kw)
                self._reached = True
                return result
            except TransportError as exc:
                if not _unreachable(exc):
                    self._reached = True  # it answered, with an error
                    raise
                if time.monotonic() + backoff > give_up:
                    raise
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _url(self, queue: str, *, create: bool = True) -> str:
        """The queue's URL (cached); a missing queue is created, or with `create=False` raises
        `QueueMissing`."""
        url = self._urls.get(queue)
        if url is not None:
            return url
        what = f"resolving queue {queue!r}"
        async with self._url_lock:
            if queue not in self._urls:
                try:
                    resp = await self._call(what, "get_queue_url", QueueName=queue)
                except TransportError as exc:
                    if not isinstance(exc.__cause__, ClientError):
                        raise
                    code = exc.__cause__.response.get("Error", {}).get("Code", "")
                    if "NonExistentQueue" not in code and "QueueDoesNotExist" not in code:
                        raise
                    if not create:
                        raise self.missing(queue) from None
                    # Created on first use, as upstream's dev tooling does.
                    resp = await self._call(what, "create_queue", QueueName=queue)
                self._urls[queue] = resp["QueueUrl"]
        return self._urls[queue]

    async def declare(self, queue: str) -> None:
        await self._url(queue)

    async def exists(self, queue: str) -> bool:
        try:
            await self._url(queue, create=False)
        except QueueMissing:
            return False
        return True

    async def send(
        self, queue: str, body: bytes, *, delay: float = 0.0, must_exist: bool = False
    ) -> None:
        if must_exist:
            await self._url(queue, create=False)
        await self._send(queue, body, time.time() + max(delay, 0.0), attempt_base=0)

    async def send_many(
        self,
        messages: Iterable[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        must_exist: bool = False,
    ) -> None:
        """`SendMessageBatch` per queue: up to 10 entries and 256 KiB per call."""
        due_at = time.time() + max(delay, 0.0)
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for queue, body in messages:
            by_queue.setdefault(queue, []).append(self._entry(body, due_at, attempt_base=0))
        if must_exist:  # before any batch: a missing queue sends nothing
            for queue in by_queue:
                await self._url(queue, create=False)
        for queue, entries in by_queue.items():
            url = await self._url(queue)
            chunk: list[dict[str, Any]] = []
            size = 0
            for entry in [*entries, None]:
                if (
                    entry is not None
                    and len(chunk) < 10
                    and size + entry["_size"] <= MAX_MESSAGE_BYTES
                ):
                    chunk.append(entry)
                    size += entry["_size"]
                    continue
                await self._send_batch(queue, url, chunk)
                chunk, size = ([entry], entry["_size"]) if entry is not None else ([], 0)

    async def _send_batch(self, queue: str, url: str, chunk: list[dict[str, Any]]) -> None:
        if not chunk:
            return
        entries = [
            {k: v for k, v in e.items() if k != "_size"} | {"Id": str(i)}
            for i, e in enumerate(chunk)
        ]
        resp = await self._call(
            f"sending a batch to {queue!r}", "send_message_batch", QueueUrl=url, Entries=entries
        )
        if failed := resp.get("Failed"):
            raise TransportError(f"SQS refused {len(failed)} of a batch to {queue!r}: {failed[0]}")

    def _entry(self, body: bytes, due_at: float, *, attempt_base: int) -> dict[str, Any]:
        """The `SendMessage` arguments for `body` (minus the queue URL), `_size` as counted."""
        text, attrs = encode_body(body)
        now = time.time()
        if sqs_needs_chaining(due_at, now, self.max_delay_hop):
            attrs[DUE_AT] = {"DataType": "String", "StringValue": repr(due_at)}
        if attempt_base:
            attrs[ATTEMPT_BASE] = {"DataType": "Number", "StringValue": str(attempt_base)}
        size = len(text.encode()) + sum(
            len(k) + len(v["DataType"]) + len(v["StringValue"]) for k, v in attrs.items()
        )
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(
                f"message of {len(body)} bytes ({size} as sent) exceeds the SQS limit of "
                f"{MAX_MESSAGE_BYTES} bytes"
            )
        entry: dict[str, Any] = {"MessageBody": text, "_size": size}
        if attrs:
            entry["MessageAttributes"] = attrs
        if delay := sqs_delay_seconds(due_at, now, self.max_delay_hop):
            entry["DelaySeconds"] = delay
        return entry

    async def _send(self, queue: str, body: bytes, due_at: float, *, attempt_base: int) -> None:
        entry = self._entry(body, due_at, attempt_base=attempt_base)
        del entry["_size"]
        url = await self._url(queue)
        await self._call(f"sending to {queue!r}", "send_message", QueueUrl=url, **entry)

    async def receive(self, queue: str, *, wait: float) -> Delivery | None:
        """While the endpoint is unreachable a receive keeps trying until `wait` is over and
        returns None, as RabbitMQ's does while its connection recovers."""
        deadline = anyio.current_time() + max(wait, 0.0)
        while True:
            try:
                url = await self._url(queue)
                remaining = deadline - anyio.current_time()
                async with _mapped(f"receiving from {queue!r}"):
                    resp = await self._client.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=1,
                        # Never longer than the caller's `wait` (whole seconds, so round down).
                        WaitTimeSeconds=max(0, min(self._wait_cap, int(remaining))),
                        VisibilityTimeout=self._visibility,
                        AttributeNames=["ApproximateReceiveCount"],
                        MessageAttributeNames=["All"],
                    )
            except TransportError as exc:
                remaining = deadline - anyio.current_time()
                if not _unreachable(exc):
                    raise
                if remaining <= 0:
                    return None
                await anyio.sleep(min(remaining, 0.5))
                continue
            for message in resp.get("Messages", []):
                if await self._forward_if_early(queue, message):
                    continue
                return SqsDelivery(self, queue, message)
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return None
            if remaining < 1:
                await anyio.sleep(min(remaining, _SHORT_POLL_PAUSE))

    async def _forward_if_early(self, queue: str, message: dict[str, Any]) -> bool:
        """A chained message not yet due goes on with its next hop of delay; True if so."""
        due = _attr(message, DUE_AT)
        if due is None or sqs_is_due(float(due), time.time()):
            return False
        delivery = SqsDelivery(self, queue, message)
        # This receipt was not a real delivery: keep the attempt count where it was.
        await self._send(queue, delivery.body, float(due), attempt_base=delivery.attempt - 1)
        await self._delete(queue, message)
        return True

    async def _delete(self, queue: str, message: dict[str, Any]) -> None:
        url = await self._url(queue)
        await self._call(
            f"deleting from {queue!r}",
            "delete_message",
            QueueUrl=url,
            ReceiptHandle=message["ReceiptHandle"],
        )

    async def _set_visibility(self, queue: str, message: dict[str, Any], seconds: float) -> None:
        url = await self._url(queue)
        timeout = min(max(math.ceil(seconds), 0), SQS_MAX_VISIBILITY_SECONDS)
        await self._call(
            f"changing visibility in {queue!r}",
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=timeout,
        )

    async def depths(self) -> dict[str, int]:
        """Visible + in flight + delayed, for this namespace's queues and any this one used."""
        async with _mapped("listing queues"):
            listed = await self._client.list_queues(QueueNamePrefix=f"asya-{self._namespace}-")
            urls = {url.rsplit("/", 1)[-1]: url for url in listed.get("QueueUrls", [])}
            urls.update(self._urls)
            out: dict[str, int] = {}
            for name in sorted(urls):
                attrs = await self._client.get_queue_attributes(
                    QueueUrl=urls[name],
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )
                out[name] = sum(int(v) for v in attrs.get("Attributes", {}).values())
        return out

    async def aclose(self) -> None:
        # In-flight messages reappear when their visibility timeout ends.
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()


__all__ = [
    "ATTEMPT_BASE",
    "DUE_AT",
    "ENCODING",
    "MAX_MESSAGE_BYTES",
    "OUTAGE_RETRY_SECONDS",
    "SqsDelivery",
    "SqsTransport",
    "encode_body",
]
