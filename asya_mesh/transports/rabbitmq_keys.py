"""RabbitMQ's naming, pure: the routing key of a queue by layout, and a delivery's attempt
number from its headers."""

from __future__ import annotations

from typing import Any, Final

#: The header our requeue copies carry: deliveries before this one.
ATTEMPT_HEADER: Final = "x-asya-attempt"
#: `rabbitmq_routing_keys` values: the queue name itself (the default), or upstream's.
ROUTING_KEY_LAYOUTS: Final = ("namespaced", "upstream")


def routing_key(namespace: str, queue: str, layout: str = "upstream") -> str:
    """The routing key a queue is bound and published with.

    "namespaced": the queue name, so two namespaces on one exchange never share a key.
    "upstream": upstream Asya's, the queue name without its `asya-{namespace}-` prefix; two
    namespaces on one exchange then deliver each other's envelopes (give each its own exchange).
    """
    if layout == "namespaced":
        return queue
    prefix = f"asya-{namespace}-"
    return queue[len(prefix) :] if queue.startswith(prefix) else queue


def attempt_of(headers: dict[str, Any], redelivered: bool) -> int:
    """1 + deliveries before this one: our requeue counter, then the broker's own count."""
    base = int(headers.get(ATTEMPT_HEADER, 0) or 0)
    count = headers.get("x-delivery-count")  # quorum queues count redeliveries exactly
    if count is not None:
        return base + int(count) + 1
    return base + (2 if redelivered else 1)  # classic queues: only "redelivered at least once"


__all__ = ["ATTEMPT_HEADER", "ROUTING_KEY_LAYOUTS", "attempt_of", "routing_key"]
