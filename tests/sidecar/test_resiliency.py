"""Policy parsing, matching and backoff (pure; hypothesis where a property says more)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_sidecar.resiliency import (
    Exhausted,
    NoPolicy,
    Policy,
    Resiliency,
    Retry,
    backoff_delay,
    decide,
    match_policy,
    parse_policies,
    parse_rules,
    pattern_matches,
)

POLICIES = """{
  "default": {"maxAttempts": 2},
  "net": {"maxAttempts": 5, "backoff": "exponential", "initialDelay": "100ms",
          "maxInterval": "1s", "jitter": true},
  "fatal": {"maxAttempts": 1, "onExhausted": ["fixer", "reporter"]}
}"""
RULES = """[{"errors": ["ConnectionError", "requests.exceptions.Timeout"], "policy": "net"},
           {"errors": ["mymod.Fatal"], "policy": "fatal"}]"""


def res() -> Resiliency:
    pol = parse_policies(POLICIES)
    return Resiliency(policies=pol, rules=parse_rules(RULES, pol))


def test_parse_upstream_json() -> None:
    pol = parse_policies(POLICIES)
    assert pol["net"] == Policy(
        max_attempts=5, backoff="exponential", initial_delay=0.1, max_interval=1.0, jitter=True
    )
    assert pol["fatal"].on_exhausted == ("fixer", "reporter")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[]", "JSON object"),
        ('{"p": {"initialDelay": "soon"}}', "initialDelay"),
        ('{"p": {"backoff": "random"}}', "'p'"),
        ('{"p": {"maxAttempts": 1, "typo": 1}}', "typo"),
        ("{nope", "JSON"),
    ],
)
def test_bad_policies_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_policies(text)


def test_rule_with_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        parse_rules('[{"errors": ["X"], "policy": "nope"}]', {})


def test_matching_by_type_then_mro_then_default() -> None:
    r = res()
    # short pattern matches the last segment of the type
    assert match_policy(r, "builtins.ConnectionError", [])[0] == "net"  # type: ignore[index]
    # ... or of an ancestor in the MRO
    assert match_policy(r, "ConnectionRefusedError", ["ConnectionError", "OSError"])[0] == "net"  # type: ignore[index]
    # dotted pattern must match exactly
    assert match_policy(r, "other.Timeout", [])[0] == "default"  # type: ignore[index]
    assert match_policy(r, "requests.exceptions.Timeout", [])[0] == "net"  # type: ignore[index]
    assert match_policy(Resiliency(), "ValueError", []) is None


@given(st.text(min_size=1, alphabet="abcXY_."), st.text(min_size=1, alphabet="abcXY_."))
def test_pattern_matching_rules(pattern: str, candidate: str) -> None:
    got = pattern_matches(pattern, candidate)
    if "." in pattern:
        assert got == (pattern == candidate)
    else:
        assert got == (pattern == candidate or candidate.split(".")[-1] == pattern)


def test_backoff_kinds() -> None:
    zero = lambda: 0.5  # noqa: E731  (jitter factor exactly 1.0)
    const = Policy(max_attempts=9, backoff="constant", initial_delay=2)
    lin = Policy(max_attempts=9, backoff="linear", initial_delay=2)
    exp = Policy(max_attempts=9, backoff="exponential", initial_delay=2, max_interval=10)
    assert [backoff_delay(const, n, zero) for n in (1, 2, 3)] == [2, 2, 2]
    assert [backoff_delay(lin, n, zero) for n in (1, 2, 3)] == [2, 4, 6]
    assert [backoff_delay(exp, n, zero) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]


@given(
    backoff=st.sampled_from(["constant", "linear", "exponential"]),
    initial=st.floats(0, 100),
    cap=st.floats(0, 50),
    attempt=st.integers(1, 10_000),
    jitter=st.booleans(),
    r=st.floats(0, 0.999999),
)
def test_backoff_properties(
    backoff: str, initial: float, cap: float, attempt: int, jitter: bool, r: float
) -> None:
    p = Policy(
        max_attempts=3,
        backoff=backoff,
        initial_delay=initial,
        max_interval=cap,  # type: ignore[arg-type]
        jitter=jitter,
    )
    d = backoff_delay(p, attempt, lambda: r)
    assert d >= 0
    base = backoff_delay(
        Policy(
            max_attempts=3,
            backoff=backoff,
            initial_delay=initial,  # type: ignore[arg-type]
            max_interval=cap,
        ),
        attempt,
        lambda: r,
    )
    if cap > 0:
        assert base <= cap
    if jitter:
        assert 0.5 * base <= d <= 1.5 * base + 1e-9
    else:
        assert d == base
    if initial > 0 and cap == 0:
        assert base >= initial


@given(attempt=st.integers(1, 20), max_attempts=st.integers(1, 10))
def test_decide_retries_until_max_attempts(attempt: int, max_attempts: int) -> None:
    r = Resiliency(policies={"default": Policy(max_attempts=max_attempts, initial_delay=1)})
    d = decide(
        r, error_type="ValueError", mro=["Exception"], attempt=attempt, elapsed=0, rand=lambda: 0.5
    )
    if attempt >= max_attempts:
        assert d == Exhausted(max_attempts, "default", ())
    else:
        assert d == Retry(1.0, max_attempts, "default")


def test_decide_max_duration_and_no_policy() -> None:
    r = Resiliency(policies={"default": Policy(max_attempts=10, max_duration=60)})
    kw = {"error_type": "E", "mro": [], "attempt": 1, "rand": lambda: 0.0}
    assert isinstance(decide(r, elapsed=59.0, **kw), Retry)  # type: ignore[arg-type]
    assert isinstance(decide(r, elapsed=60.0, **kw), Exhausted)  # type: ignore[arg-type]
    assert decide(None, elapsed=0, **kw) == NoPolicy()  # type: ignore[arg-type]
    assert decide(
        res(), elapsed=0, error_type="mymod.Fatal", mro=[], attempt=1, rand=lambda: 0
    ) == Exhausted(1, "fatal", ("fixer", "reporter"))
