"""SidecarConfig from env + CLI overrides: defaults, durations, clear errors."""

from __future__ import annotations

import pytest

from asya_sidecar.config import SidecarConfig


def test_defaults_match_the_spec() -> None:
    c = SidecarConfig.from_env({"ASYA_ACTOR_NAME": "tokens"})
    assert c.actor_name == "tokens" and c.namespace == "default"
    assert c.transport.kind == "sqlite" and c.transport.sqlite_path == "./asya-queues.db"
    assert c.socket_path == "/var/run/asya/asya-runtime.sock"
    assert c.runtime_ready_timeout == 300 and c.actor_timeout == 300
    assert c.concurrency == 1 and c.resiliency is None
    assert (c.sink, c.sump, c.gateway_url, c.is_end_actor) == ("x-sink", "x-sump", None, False)
    assert c.metrics_addr == "127.0.0.1:8080"
    assert c.transport.sqs_visibility_timeout == 600  # 2 x actor timeout
    assert c.preflight_timeout == 0.15


def test_gateway_budgets_take_durations_and_zero_flush() -> None:
    env = {"ASYA_ACTOR_NAME": "a", "ASYA_GATEWAY_PREFLIGHT_TIMEOUT": "50ms"}
    c = SidecarConfig.from_env(env)
    assert c.preflight_timeout == pytest.approx(0.05)


def test_env_and_cli_overrides() -> None:
    env = {
        "ASYA_ACTOR_NAME": "a",
        "ASYA_NAMESPACE": "prod",
        "ASYA_RESILIENCY_ACTOR_TIMEOUT": "1m30s",
        "ASYA_RUNTIME_READY_TIMEOUT": "300ms",
        "ASYA_CONCURRENCY": "4",
        "ASYA_IS_END_ACTOR": "yes",
        "ASYA_METRICS_ADDR": "",
        "ASYA_GATEWAY_URL": "http://gw:8089",
        "ASYA_RESILIENCY_POLICIES": '{"default": {"maxAttempts": 3}}',
    }
    c = SidecarConfig.from_env(env, ASYA_CONCURRENCY=8, ASYA_NAMESPACE=None)
    assert c.actor_timeout == 90 and c.runtime_ready_timeout == pytest.approx(0.3)
    assert c.concurrency == 8  # the option wins
    assert c.namespace == "prod"  # None = not given
    assert c.is_end_actor and c.metrics_addr == "" and c.gateway_url == "http://gw:8089"
    assert c.resiliency is not None and c.resiliency.policies["default"].max_attempts == 3


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "ASYA_ACTOR_NAME"),
        ({"ASYA_RESILIENCY_ACTOR_TIMEOUT": "5 minutes"}, "ASYA_RESILIENCY_ACTOR_TIMEOUT"),
        ({"ASYA_CONCURRENCY": "many"}, "ASYA_CONCURRENCY"),
        ({"ASYA_CONCURRENCY": "0"}, "ASYA_CONCURRENCY"),
        ({"ASYA_IS_END_ACTOR": "maybe"}, "ASYA_IS_END_ACTOR"),
        ({"ASYA_METRICS_ADDR": "localhost"}, "ASYA_METRICS_ADDR"),
        ({"ASYA_LOG_FORMAT": "xml"}, "ASYA_LOG_FORMAT"),
        ({"ASYA_RESILIENCY_POLICIES": "{"}, "ASYA_RESILIENCY_POLICIES"),
        ({"ASYA_RESILIENCY_RULES": '[{"errors": ["E"], "policy": "p"}]'}, "ASYA_RESILIENCY_RULES"),
        ({"ASYA_TRANSPORT": "carrier-pigeon"}, "ASYA_TRANSPORT"),
        ({"ASYA_GATEWAY_URL": "gw:8089"}, "ASYA_GATEWAY_URL"),
        ({"ASYA_GATEWAY_PREFLIGHT_TIMEOUT": "soon"}, "ASYA_GATEWAY_PREFLIGHT_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    full = {"ASYA_ACTOR_NAME": "a"} | env if needle != "ASYA_ACTOR_NAME" else env
    with pytest.raises(ValueError, match=needle):
        SidecarConfig.from_env(full)
