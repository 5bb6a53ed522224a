"""The public surface: the package's and every module's `__all__`, compared in full, and
each name resolves (like httpx's test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

import asya_sidecar

MODULES: dict[str, list[str]] = {
    "circuit": ["Circuit"],
    "endactor": ["run_end_worker"],
    "envelope": [
        "Ack",
        "Action",
        "CancelDone",
        "CancelInvocation",
        "Cancelled",
        "Count",
        "Delivered",
        "EnvelopeEvent",
        "EnvelopeMachine",
        "EnvelopeStateError",
        "Fatal",
        "FlyAccepted",
        "Frame",
        "Invoke",
        "InvokeFailed",
        "Log",
        "PAUSE_HEADER",
        "PauseStored",
        "Preflight",
        "PreflightAnswered",
        "Report",
        "ReportPause",
        "Requeue",
        "RuntimeLost",
        "Send",
        "SendFailed",
        "SendWithAck",
        "Sent",
        "Settings",
        "Shutdown",
        "State",
        "TimedOut",
    ],
    "envelope_io": [
        "Ack",
        "Action",
        "CancelDone",
        "CancelInvocation",
        "Cancelled",
        "Count",
        "Delivered",
        "EnvelopeEvent",
        "Fatal",
        "FlyAccepted",
        "Frame",
        "Invoke",
        "InvokeFailed",
        "Log",
        "PauseStored",
        "Preflight",
        "PreflightAnswered",
        "Report",
        "ReportPause",
        "Requeue",
        "RuntimeLost",
        "Send",
        "SendFailed",
        "SendWithAck",
        "Sent",
        "Shutdown",
        "TimedOut",
    ],
    "feed": ["SEEN_CAP", "STOPPING", "Feed", "stopped_status"],
    "forwarder": ["EnvelopeEvents", "GatewayState", "NullEvents"],
    "gateway": ["GatewayClient", "gateway_client", "safe_gateway_url"],
    "metrics": ["NAMESPACE", "Metrics", "serve_metrics"],
    "reports": [
        "fly",
        "fly_total",
        "legacy",
        "progress",
        "resolve_gateway",
        "safe_gateway_url",
        "status_event",
        "terminal",
    ],
    "resiliency": [
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
    ],
    "routing": [
        "FANOUT_NAMESPACE",
        "FAN_IN",
        "FIRST_ATTEMPT",
        "GATEWAY_URL",
        "MESH_STATUS",
        "ON_EXHAUSTED",
        "RETRY",
        "ROUTE_OVERRIDE",
        "ROUTE_RESOLVED",
        "ROUTING",
        "SINK",
        "SUMP",
        "Names",
        "Outgoing",
        "deadline_expired",
        "deadline_left",
        "encode",
        "error_details",
        "fanout_id",
        "fly_count",
        "no_output",
        "parse_message",
        "parse_rfc3339",
        "preflight",
        "prepare_input",
        "rfc3339",
        "route_emit",
        "route_mismatch",
        "runtime_error",
        "runtime_lost",
        "serves",
        "sump",
        "timed_out",
        "with_fly_count",
    ],
    "runner": ["WAITING_LOG_EVERY", "RuntimeHung", "run_sidecar"],
    "runtime_client": [
        "InvokeNotDelivered",
        "ProtocolMismatch",
        "RuntimeConnection",
        "RuntimeLost",
        "RuntimeUnavailable",
        "connect",
        "wait_ready",
    ],
    "worker": ["LeaseKeeper", "Lifecycle", "RuntimeHung", "Worker"],
}


def test_package_exports() -> None:
    assert asya_sidecar.__all__ == ["SidecarConfig"]
    for name in asya_sidecar.__all__:
        assert getattr(asya_sidecar, name) is not None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_exports(module: str) -> None:
    mod = importlib.import_module(f"asya_sidecar.{module}")
    assert sorted(mod.__all__) == sorted(MODULES[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None
