"""Pure delay arithmetic for brokers without arbitrary delays: RabbitMQ TTL buckets, SQS chaining.

No I/O and no clock reads: callers pass `now`, so hypothesis can check the invariants.
"""

from __future__ import annotations

import math
from typing import Final

#: Steps per doubling of the delay: a bucket is at most 1/8 (12.5 %) longer than asked.
BUCKET_STEPS: Final = 8
#: Shortest and longest RabbitMQ delay bucket (ms). Longer delays are capped: a retry policy
#: asking for more than a day is a configuration error we do not silently honour forever.
MIN_BUCKET_MS: Final = 8
MAX_BUCKET_MS: Final = 24 * 3600 * 1000

#: SQS's own cap on DelaySeconds and on one message visibility timeout.
SQS_MAX_DELAY_SECONDS: Final = 900
SQS_MAX_VISIBILITY_SECONDS: Final = 12 * 3600
#: A chained message this close to its due time is delivered rather than sent on for 1 s more.
DUE_SLACK_SECONDS: Final = 0.25


def delay_bucket_ms(delay: float) -> int:
    """The RabbitMQ delay-queue TTL (ms) used for `delay` seconds: never shorter than asked.

    Buckets are `m * 2**e` ms with `m` in 8..15, so a delay is rounded up by at most 12.5 %
    and delays from 8 ms to a day need at most ~150 distinct queues (in practice the handful
    a retry policy uses; 1 s, 2 s, 4 s, ... and round numbers like 5 s, 10 s, 30 s are exact
    or within a few percent).
    """
    ms = max(math.ceil(delay * 1000), MIN_BUCKET_MS)
    if ms >= MAX_BUCKET_MS:
        return MAX_BUCKET_MS
    exponent = max(ms.bit_length() - 4, 0)  # so that ms >> exponent lies in 8..15
    mantissa = -(-ms // (1 << exponent))  # ceiling division
    return min(mantissa << exponent, MAX_BUCKET_MS)


def sqs_delay_seconds(due_at: float, now: float, max_hop: int = SQS_MAX_DELAY_SECONDS) -> int:
    """The next `DelaySeconds` for a message due at `due_at` (epoch seconds): 0..max_hop.

    Rounded up, so a delay is never shortened; a fraction of a second becomes one second.
    """
    remaining = due_at - now
    if remaining <= 0:
        return 0
    return min(math.ceil(remaining), max_hop)


def sqs_needs_chaining(due_at: float, now: float, max_hop: int = SQS_MAX_DELAY_SECONDS) -> bool:
    """Whether one `DelaySeconds` hop cannot reach `due_at`, so the message carries its due time."""
    return due_at - now > max_hop


def sqs_is_due(due_at: float, now: float, *, slack: float = DUE_SLACK_SECONDS) -> bool:
    """Whether a received chained message may be delivered (a hair early is clock noise)."""
    return due_at - now <= slack


__all__ = [
    "BUCKET_STEPS",
    "DUE_SLACK_SECONDS",
    "MAX_BUCKET_MS",
    "MIN_BUCKET_MS",
    "SQS_MAX_DELAY_SECONDS",
    "SQS_MAX_VISIBILITY_SECONDS",
    "delay_bucket_ms",
    "sqs_delay_seconds",
    "sqs_is_due",
    "sqs_needs_chaining",
]
