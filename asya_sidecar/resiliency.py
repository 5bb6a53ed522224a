"""Resiliency policies and rules in upstream's JSON format: parsing, matching, backoff, exhaustion.

Pure: no clock, no randomness of its own (both are passed in), no I/O. The worker asks
`decide()` what to do with a failed invocation and carries the answer out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

from asya_runtime.durations import parse_duration

Backoff = Literal["constant", "linear", "exponential"]


class Policy(msgspec.Struct, kw_only=True, frozen=True):
    """One named policy (upstream `ASYA_RESILIENCY_POLICIES` entry); durations in seconds."""

    max_attempts: int = 1
    backoff: Backoff = "constant"
    initial_delay: float = 0.0
    max_interval: float = 0.0
    max_duration: float = 0.0
    jitter: bool = False
    on_exhausted: tuple[str, ...] = ()


class Rule(msgspec.Struct, kw_only=True, frozen=True):
    """`{errors: [patterns], policy: name}`: the first rule matching an error picks its policy."""

    errors: tuple[str, ...]
    policy: str


class Resiliency(msgspec.Struct, kw_only=True, frozen=True):
    policies: dict[str, Policy] = {}
    rules: tuple[Rule, ...] = ()


class Retry(msgspec.Struct, frozen=True):
    """Send the envelope back to this actor's queue after `delay` seconds."""

    delay: float
    max_attempts: int
    policy: str


class Exhausted(msgspec.Struct, frozen=True):
    """No more attempts: route to `on_exhausted` if given, else x-sink `PolicyExhausted`."""

    max_attempts: int
    policy: str
    on_exhausted: tuple[str, ...]


class NoPolicy(msgspec.Struct, frozen=True):
    """No policy applies: one attempt only, x-sink `RuntimeError`."""


Decision = Retry | Exhausted | NoPolicy

_POLICY_KEYS = {
    "maxAttempts": "max_attempts",
    "backoff": "backoff",
    "initialDelay": "initial_delay",
    "maxInterval": "max_interval",
    "maxDuration": "max_duration",
    "jitter": "jitter",
    "onExhausted": "on_exhausted",
}
_DURATION_KEYS = {"initialDelay", "maxInterval", "maxDuration"}


def _duration(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"policy {name!r}: {key} must be a duration, got {value!r}")
    if isinstance(value, int | float):
        return float(value)  # a bare number is seconds
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"policy {name!r}: {key}: {exc}") from None
    raise ValueError(f"policy {name!r}: {key} must be a duration string, got {value!r}")


def parse_policies(text: str) -> dict[str, Policy]:
    """Parse `ASYA_RESILIENCY_POLICIES`; raises `ValueError` naming the policy and key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of name -> policy")
    out: dict[str, Policy] = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"policy {name!r} must be an object")
        raw: dict[str, Any] = {}
        for key, value in spec.items():
            if key not in _POLICY_KEYS:
                raise ValueError(f"policy {name!r}: unknown key {key!r}")
            raw[_POLICY_KEYS[key]] = _duration(name, key, value) if key in _DURATION_KEYS else value
        try:
            policy = msgspec.convert(raw, Policy)
        except msgspec.ValidationError as exc:
            raise ValueError(f"policy {name!r}: {exc}") from None
        if policy.max_attempts <= 0:  # upstream treats <= 0 as 1
            policy = msgspec.structs.replace(policy, max_attempts=1)
        out[name] = policy
    return out


def parse_rules(text: str, policies: dict[str, Policy]) -> tuple[Rule, ...]:
    """Parse `ASYA_RESILIENCY_RULES`; every rule must name a known policy."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    try:
        rules = msgspec.convert(data, tuple[Rule, ...])
    except msgspec.ValidationError as exc:
        raise ValueError(f"must be a JSON array of {{errors, policy}}: {exc}") from None
    for i, rule in enumerate(rules):
        if rule.policy not in policies:
            raise ValueError(f"rule {i} names unknown policy {rule.policy!r}")
    return rules


def pattern_matches(pattern: str, candidate: str) -> bool:
    """Upstream matching: a dotted pattern must equal; a short one matches the last segment."""
    if "." in pattern:
        return pattern == candidate
    return pattern == candidate or candidate.rsplit(".", 1)[-1] == pattern


def match_policy(res: Resiliency, error_type: str, mro: Sequence[str]) -> tuple[str, Policy] | None:
    """The policy for an error: the first rule matching its type or an ancestor, else `default`."""
    candidates = [error_type, *mro]
    for rule in res.rules:
        if any(pattern_matches(p, c) for p in rule.errors for c in candidates):
            return rule.policy, res.policies[rule.policy]
    if "default" in res.policies:
        return "default", res.policies["default"]
    return None


def backoff_delay(policy: Policy, failed_attempt: int, rand: Callable[[], float]) -> float:
    """Delay before the retry that follows attempt `failed_attempt` (1-based), in seconds."""
    if policy.initial_delay <= 0:
        return 0.0
    n = max(1, failed_attempt)
    if policy.backoff == "linear":
        delay = n * policy.initial_delay
    elif policy.backoff == "exponential":
        # Cap the exponent: 2**1000 overflows a float multiplication, and any cap is reached
        # long before then.
        delay = policy.initial_delay * 2.0 ** min(n - 1, 60)
    else:
        delay = policy.initial_delay
    if policy.max_interval > 0:
        delay = min(delay, policy.max_interval)
    if policy.jitter:
        delay *= 0.5 + rand()  # upstream's code: x [0.5, 1.5)
    return delay


def decide(
    res: Resiliency | None,
    *,
    error_type: str,
    mro: Sequence[str],
    attempt: int,
    elapsed: float | None,
    rand: Callable[[], float],
) -> Decision:
    """What to do after attempt `attempt` failed; `elapsed` = seconds since the first attempt."""
    if res is None:
        return NoPolicy()
    found = match_policy(res, error_type, mro)
    if found is None:
        return NoPolicy()
    name, policy = found
    exhausted = attempt >= policy.max_attempts or (
        policy.max_duration > 0 and elapsed is not None and elapsed >= policy.max_duration
    )
    if exhausted:
        return Exhausted(policy.max_attempts, name, policy.on_exhausted)
    return Retry(backoff_delay(policy, attempt, rand), policy.max_attempts, name)


__all__ = [
    "Backoff",
    "Decision",
    "Exhausted",
    "NoPolicy",
    "Policy",
    "Resiliency",
    "Retry",
    "Rule",
    "backoff_delay",
    "decide",
    "match_policy",
    "parse_policies",
    "parse_rules",
    "pattern_matches",
]
