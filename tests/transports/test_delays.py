"""Property tests of the pure delay arithmetic: RabbitMQ TTL buckets and SQS delay chaining."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asya_mesh.transports.delays import (
    DUE_SLACK_SECONDS,
    MAX_BUCKET_MS,
    MIN_BUCKET_MS,
    SQS_MAX_DELAY_SECONDS,
    delay_bucket_ms,
    sqs_delay_seconds,
    sqs_is_due,
    sqs_needs_chaining,
)

delays = st.floats(min_value=0, max_value=MAX_BUCKET_MS / 1000, allow_nan=False)


@given(delays)
def test_bucket_never_shorter_and_at_most_an_eighth_longer(delay: float) -> None:
    bucket = delay_bucket_ms(delay)
    asked = max(delay * 1000, MIN_BUCKET_MS)
    assert bucket >= asked - 1e-6 or bucket == MAX_BUCKET_MS
    assert bucket <= asked * 1.125 + 1


@given(delays, delays)
def test_buckets_are_monotonic(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert delay_bucket_ms(lo) <= delay_bucket_ms(hi)


@given(delays)
def test_bucket_is_its_own_bucket(delay: float) -> None:
    bucket = delay_bucket_ms(delay)
    assert delay_bucket_ms(bucket / 1000) == bucket


def test_few_buckets_cover_a_second_to_an_hour() -> None:
    buckets = {delay_bucket_ms(ms / 1000) for ms in range(1000, 3_600_000, 97)}
    assert len(buckets) <= 8 * 12 + 1  # 8 per doubling, ~12 doublings


def test_common_retry_delays_are_near_exact() -> None:
    assert delay_bucket_ms(1) == 1024
    assert delay_bucket_ms(2) == 2048
    assert delay_bucket_ms(0.5) == 512
    assert delay_bucket_ms(0) == MIN_BUCKET_MS


@given(
    hops_needed=st.floats(min_value=0, max_value=200, allow_nan=False),
    max_hop=st.sampled_from([1, 7, SQS_MAX_DELAY_SECONDS]),
    lag=st.floats(min_value=0, max_value=0.5),
)
def test_sqs_chaining_reaches_the_due_time_never_early(
    hops_needed: float, max_hop: int, lag: float
) -> None:
    """Simulate the hops: send with DelaySeconds, receive `lag` s after it elapses, send on."""
    total = hops_needed * max_hop
    now = 1_700_000_000.0
    due = now + total
    hops = 0
    while True:
        step = sqs_delay_seconds(due, now, max_hop)
        assert 0 <= step <= max_hop
        if hops == 0 and not sqs_needs_chaining(due, now, max_hop):
            now += step + lag  # one hop, no due-time attribute needed
            break
        now += step + lag
        hops += 1
        if sqs_is_due(due, now):
            break
        assert hops <= total / max_hop + 2, "chaining does not converge"
    assert now >= due - DUE_SLACK_SECONDS


def test_chaining_thresholds() -> None:
    assert not sqs_needs_chaining(900, 0)
    assert sqs_needs_chaining(900.5, 0)
    assert sqs_delay_seconds(0.2, 0) == 1
    assert sqs_delay_seconds(-3, 0) == 0
    assert sqs_delay_seconds(5000, 0) == SQS_MAX_DELAY_SECONDS
