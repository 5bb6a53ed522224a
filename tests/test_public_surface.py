"""The public surface of all five packages: every module's `__all__`, listed here in full.

Changing what a module exports means changing this list (like httpx's test_exported_members).
Every module defines `__all__` (and a docstring) unless it is exempt below, with the reason;
every exported name resolves, and every class or function a module defines without a leading
underscore is exported. (This replaces the per-package export tests.)
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asya_runtime", "asya_sidecar", "asya_gateway", "asya_mesh", "asya_dev")

# module -> why it has no `__all__` (it is not imported here either).
EXEMPT: dict[str, str] = {
    "asya_runtime.__main__": "`python -m asya_runtime`: runs the CLI when imported",
    "asya_mesh": "a package docstring only: import from its modules",
    "asya_dev": "a package docstring only: import from its modules",
}

# fmt: off
SURFACE: dict[str, list[str]] = {
    "asya_dev.cli": [
        "DEFAULT_HANDLERS", "DevOptions", "DevSettings", "SUBCOMMANDS", "main", "options_from",
        "parse_actor_overrides", "run_dev",
    ],
    "asya_dev.mesh": [
        "FEED_CONNECTED", "MeshNotReady", "MeshPlan", "dev_flows", "feed_connected",
        "plan_mesh", "wait_ready",
    ],
    "asya_dev.image": [
        "BuildPlan", "DEFAULT_RUNTIME_IMAGE", "ENGINES", "HANDLER_CONTAINERFILE",
        "ImageError", "add_image_command", "build", "build_command", "find_engine", "main",
        "plan_build",
    ],
    "asya_dev.options": [
        "DEFAULT_HANDLERS", "DevOptions", "DevSettings", "END_ACTORS", "SOCKET_NAME",
        "options_from", "parse_actor_overrides",
    ],
    "asya_dev.render": ["SseEvent", "SseParser", "TerminalRenderer"],
    "asya_dev.supervisor": ["Child", "ChildCrashed", "ChildSpec", "Supervisor", "python_script"],
    "asya_gateway": ["GatewayConfig", "TaskEngine", "TaskRegistry", "create_app"],
    "asya_gateway.a2a": ["A2ADoor", "DoorConfig", "a2a_routes"],
    "asya_gateway.a2a.cards": ["flow_card", "gateway_card", "security"],
    "asya_gateway.a2a.door": ["A2ADoor", "DoorConfig", "a2a_routes"],
    "asya_gateway.a2a.listing": [
        "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "PageToken", "PageTokenError", "Query",
        "SCAN_BUDGET", "decode_token", "encode_token", "list_page", "query",
    ],
    "asya_gateway.a2a.model": [
        "A2AArtifactUpdate", "A2AEvent", "A2AStatusUpdate", "Artifact", "FINAL_STATES",
        "INTERRUPTED_STATES", "STATE_OF_STATUS", "Status", "TERMINAL_STATES",
        "TaskSnapshot", "Version", "part_v03", "render", "render_task", "render_task_v03",
        "render_task_v1", "render_v03", "render_v1", "state_name",
    ],
    "asya_gateway.a2a.replay": ["add_history", "catch_up", "latest_event_id", "task_events"],
    "asya_gateway.a2a.rpc": [
        "Call", "EXTENDED_CARD_NOT_CONFIGURED", "INTERNAL_ERROR", "INVALID_PARAMS",
        "INVALID_REQUEST", "METHODS", "METHOD_NOT_FOUND", "Op", "PARSE_ERROR",
        "PUSH_NOT_SUPPORTED", "RequestId", "RpcError", "TASK_NOT_CANCELABLE",
        "TASK_NOT_FOUND", "UNSUPPORTED_OPERATION", "call_message", "call_skill",
        "error_bytes", "history_length", "parse_call", "peek_version", "result_bytes",
        "returns_immediately",
    ],
    "asya_gateway.a2a.stream": ["A2AStream", "HEADERS", "KEEPALIVE", "Producer", "sse_data"],
    "asya_gateway.a2a.translate": [
        "ArtifactFly", "EVENTS_ARTIFACT", "FlyEffect", "MessageFly", "RESULT_ARTIFACT",
        "STREAM_ARTIFACT", "a2a_of", "message_payload", "norm_message", "norm_part",
        "norm_parts", "read_fly",
    ],
    "asya_gateway.a2a.view": ["DEFAULT_MAX_BYTES", "TaskA2A", "error_text"],
    "asya_gateway.a2a.wire": ["StreamWire"],
    "asya_gateway.answers": ["merge_payload", "message_patch"],
    "asya_gateway.envelopes": ["PAUSE_HEADER", "SINK", "first_envelope", "resumed_envelope"],
    "asya_gateway.eventstream": ["PATH", "apply_batch", "serve_stream"],
    "asya_gateway.taskfeed": ["TaskFeed", "feed_status"],
    "asya_gateway.app": ["create_app", "default_database_url"],
    "asya_gateway.rest": [
        "CreateTask", "Gateway", "HTTPError", "Resume", "http_error", "service_error",
    ],
    "asya_gateway.auth": [
        "AuthConfigError", "AuthFailure", "ClientAuth", "MESH", "MeshAuth", "OPEN",
        "Principal", "bearer_token", "current_principal", "may_see", "parse_api_keys",
    ],
    "asya_gateway.bus": [
        "Bus", "CHANNEL", "INLINE_MAX", "LocalBus", "Message", "PgBus", "fly_message",
    ],
    "asya_gateway.cli": ["main", "serve", "start_warnings"],
    "asya_gateway.config": ["GatewayConfig"],
    "asya_gateway.engine": ["Enqueue", "TaskEngine"],
    "asya_gateway.flows": [
        "Flow", "Flows", "FlowsError", "NAME_PATTERN", "load_flows", "parse_flow",
        "parse_flows",
    ],
    "asya_gateway.guard": ["Access", "Guard", "Listeners", "access", "current_principal"],
    "asya_gateway.ingest": [
        "BadEvent", "ProgressUpdate", "parse_events",
        "parse_legacy_final", "parse_legacy_fly", "parse_legacy_progress",
        "parse_task_events",
    ],
    "asya_gateway.mcp": [
        "ArgumentsRefused", "McpDoor", "TASK_ID_META", "ToolCatalog", "ToolSchemaError",
        "mcp_app",
    ],
    "asya_gateway.mcp.core": [
        "ArgumentsRefused", "CallState", "Outcome", "Progress", "TASK_ID_META",
        "ToolCatalog", "ToolSchemaError", "ToolSpec", "describe_violation", "error_message",
        "fly_message", "outcome", "structured", "timed_out", "tool_spec",
    ],
    "asya_gateway.mcp.server": ["CANCEL_GRACE", "McpDoor", "mcp_app"],
    "asya_gateway.ordering": ["FlyGate"],
    "asya_gateway.service": [
        "AlreadyTerminal", "Cursor", "FlyUpdate", "Listed", "NotPaused", "ServiceError",
        "StatusUpdate", "TERMINAL_STATUSES", "TaskService", "TaskUpdate", "TaskView",
        "Unavailable", "UnknownActor", "UnknownFlow", "UnknownTask",
    ],
    "asya_gateway.sse": [
        "A2A_EVENT_KEYS", "SseResponse", "SseSource", "encode_comment", "encode_sse",
        "fly_event_name", "might_be_a2a", "one_line_size",
    ],
    "asya_gateway.rounds": ["Round", "plan_rounds"],
    "asya_gateway.state": [
        "RANK", "TERMINAL", "TaskRecord", "apply_status", "apply_statuses", "cancel", "fail",
        "progress_fraction", "resumed", "rfc3339", "timed_out", "update_data", "view",
        "view_json",
    ],
    "asya_gateway.store": [
        "SCHEMA_VERSION", "SchemaTooNew", "SqliteStore", "StoreError", "TaskExists",
        "TaskStore", "open_store", "verify_store",
    ],
    "asya_gateway.store.base": [
        "Change", "Cursor", "SCHEMA_VERSION", "SchemaTooNew", "StoreError", "TaskExists",
        "TaskStore", "Updated", "check_version", "decode", "encode", "redact",
    ],
    "asya_gateway.store.combine": ["Combiner"],
    "asya_gateway.store.postgres": ["PostgresStore", "SCHEMA_LOCK"],
    "asya_gateway.store.sqlite": ["SqliteStore"],
    "asya_gateway.subscribers": ["Item", "Subscriber"],
    "asya_gateway.tasks": ["Live", "TaskRegistry"],
    "asya_mesh.events": [
        "EVENT_STATUSES", "Event", "EventStatus", "FLY_COUNT_HEADER", "FlyEvent", "MeshEvent",
        "ProgressState", "StatusData", "StatusEvent", "TerminalState", "encode_events",
    ],
    "asya_mesh.names": [
        "ACTOR_NAME_PATTERN", "queue_name", "validate_actor_name", "validate_namespace",
    ],
    "asya_mesh.transports": [
        "DEFAULT_LEASE_SECONDS", "Delivery", "KINDS", "LeaseLost", "MessageTooLarge",
        "QueueMissing", "Transport", "TransportConfig", "TransportError", "open_transport",
        "prefetch_for", "queue_name",
    ],
    "asya_mesh.transports.base": ["DEFAULT_LEASE_SECONDS", "Delivery", "Transport"],
    "asya_mesh.transports.config": ["KINDS", "TransportConfig", "probe_transport", "redact_url"],
    "asya_mesh.transports.delays": [
        "BUCKET_STEPS", "DUE_SLACK_SECONDS", "MAX_BUCKET_MS", "MIN_BUCKET_MS",
        "SQS_MAX_DELAY_SECONDS", "SQS_MAX_VISIBILITY_SECONDS", "delay_bucket_ms",
        "sqs_delay_seconds", "sqs_is_due", "sqs_needs_chaining",
    ],
    "asya_mesh.transports.doorbell": ["Bell", "Ringer", "bell_directory"],
    "asya_mesh.transports.errors": [
        "LeaseLost", "MessageTooLarge", "QueueMissing", "TransportError",
    ],
    "asya_mesh.transports.memory": [
        "MemoryDelivery", "MemoryQueues", "MemoryTransport", "OnExtend", "OnSend",
    ],
    "asya_mesh.transports.rabbitmq": [
        "DELAY_HEADER", "MAX_MESSAGE_BYTES", "RECONNECT_INTERVAL_SECONDS", "RabbitMQDelivery",
        "RabbitMQTransport", "SEND_RETRY_SECONDS",
    ],
    "asya_mesh.transports.rabbitmq_keys": [
        "ATTEMPT_HEADER", "ROUTING_KEY_LAYOUTS", "attempt_of", "routing_key",
    ],
    "asya_mesh.transports.sqlite": [
        "MAX_MESSAGE_BYTES", "SAFETY_POLL_SECONDS", "SqliteDelivery", "SqliteTransport",
    ],
    "asya_mesh.transports.sqlite_store": [
        "BUSY_TIMEOUT_MS", "LOOP_BODY_BYTES", "Leased", "Store", "WantThread",
    ],
    "asya_mesh.transports.sqs": [
        "ATTEMPT_BASE", "DUE_AT", "ENCODING", "MAX_MESSAGE_BYTES", "OUTAGE_RETRY_SECONDS",
        "SqsDelivery", "SqsTransport", "encode_body",
    ],
    "asya_runtime": [
        "AbiError", "HandlerKind", "HandlerLoadError", "LoadedHandler", "__version__",
        "load_handler",
    ],
    "asya_runtime.abi": ["Invocation", "error_frame", "qualified_name"],
    "asya_runtime.cli": ["RuntimeConfig", "main", "socket_path_from_env"],
    "asya_runtime.client": ["envelope_for", "invoke_once", "raw_invoke"],
    "asya_runtime.codec": [
        "FrameReader", "FrameWriter", "NEED_DATA", "runtime_reader", "sidecar_reader",
    ],
    "asya_runtime.connection": [
        "ConnAction", "ConnEvent", "ConnState", "Connection", "ConnectionState",
    ],
    "asya_runtime.driver": ["Sink", "drive", "sync_calls_running"],
    "asya_runtime.durations": ["parse_duration"],
    "asya_runtime.errors": [
        "AbiError", "AsyaError", "HandlerLoadError", "LocalProtocolError", "ProtocolError",
        "RemoteProtocolError", "error_code",
    ],
    "asya_runtime.extras": ["NEEDS", "asya", "gateway", "sidecar"],
    "asya_runtime.gcpolicy": ["THRESHOLDS", "freeze_startup_objects"],
    "asya_runtime.jsonable": ["copy_json", "to_jsonable"],
    "asya_runtime.loader": [
        "HandlerKind", "LoadedHandler", "ensure_cwd_importable", "kind_of", "load_handler",
    ],
    "asya_runtime.outbox": ["HIGH_WATER", "Outbox"],
    "asya_runtime.paths": [
        "Index", "Key", "Slice", "Step", "check_write", "delete", "get", "parse", "set_",
    ],
    "asya_runtime.server": [
        "DEFAULT_CONCURRENCY", "DEFAULT_SHUTDOWN_GRACE", "ServerConfig", "serve",
    ],
    "asya_runtime.session": ["Session", "Shared"],
    "asya_runtime.settings": [
        "ConfigError", "Option", "load", "load_one", "one_of", "opt", "options",
    ],
    "asya_runtime.settings_cli": [
        "Parser", "add_arguments", "format_default", "given_from_args", "help_line",
        "markdown_table",
    ],
    "asya_runtime.slots": ["Slots"],
    "asya_runtime.socketfile": [
        "open_listener", "prepare_socket_path", "publish_ready", "unpublish",
    ],
    "asya_runtime.testing": [
        "actor", "collect_all", "emits", "errors", "flies", "make_envelope", "run_handler",
        "run_handler_sync",
    ],
    "asya_runtime.wire": [
        "Cancel", "DEFAULT_MAX_FRAME_BYTES", "Emit", "End", "Envelope", "Error", "Fly",
        "Frame", "Hello", "Invoke", "MSG_PARSING_ERROR", "PROCESSING_ERROR",
        "PROTOCOL_VERSION", "READY_FILE", "Route", "RuntimeFrame", "SidecarFrame",
        "decode_envelope", "invoke_frame",
    ],
    "asya_sidecar": ["SidecarConfig"],
    "asya_sidecar.circuit": ["Circuit"],
    "asya_sidecar.cli": ["main"],
    "asya_sidecar.config": ["LOG_LEVELS", "SidecarConfig", "describe"],
    "asya_sidecar.endactor": ["run_end_worker"],
    "asya_sidecar.envelope": [
        "Ack", "Action", "CancelDone", "CancelInvocation", "Cancelled", "Count",
        "Delivered", "EnvelopeEvent", "EnvelopeMachine", "EnvelopeStateError", "Fatal",
        "FrameArrived", "InvokeFailed", "Log", "PAUSE_HEADER", "PauseStored", "Preflight",
        "PreflightAnswered", "Report", "ReportPause", "Requeue", "RuntimeGone", "Send",
        "SendFailed", "SendWithAck", "Sent", "Settings", "Shutdown", "StartInvoke", "State",
        "TimedOut",
    ],
    "asya_sidecar.envelope_io": [
        "Ack", "Action", "CancelDone", "CancelInvocation", "Cancelled", "Count",
        "Delivered", "EnvelopeEvent", "Fatal", "FrameArrived", "InvokeFailed", "Log",
        "PauseStored", "Preflight", "PreflightAnswered", "Report", "ReportPause", "Requeue",
        "RuntimeGone", "Send", "SendFailed", "SendWithAck", "Sent", "Shutdown",
        "StartInvoke", "TimedOut",
    ],
    "asya_sidecar.envelope_settle": [
        "EnvelopeStateError", "MAX_SEND_ATTEMPTS", "REQUEUE_ON_FAILURE", "Settings", "Settling",
        "State",
    ],
    "asya_sidecar.envelope_status": [
        "build_status", "failed_fields", "failed_status", "kept_fields", "parse_rfc3339",
        "rfc3339",
    ],
    "asya_sidecar.feed": ["Feed", "SEEN_CAP", "STOPPING", "stopped_status"],
    "asya_sidecar.preflight": ["DEFAULT_PREFLIGHT_TIMEOUT", "Preflights"],
    "asya_sidecar.http": [
        "Answer",
        "Http",
        "HttpError",
        "Refused",
        "Socket",
        "Streaming",
        "open_http",
    ],
    "asya_sidecar.stream": ["EventStream", "IDLE", "PATH", "REPROBE"],
    "asya_sidecar.link": ["GatewayLink", "MAX_POSTS", "TIMEOUT", "tagged"],
    "asya_sidecar.forwarder": [
        "EnvelopeEvents", "GatewayOutbox", "GatewayState", "MAX_MERGED_BYTES", "NullEvents",
        "Pending", "merge",
    ],
    "asya_sidecar.gateway": ["GatewayClient", "gateway_client", "safe_gateway_url"],
    "asya_sidecar.logging": ["configure_logging", "quiet_broker_clients"],
    "asya_sidecar.metrics": ["Metrics", "NAMESPACE", "serve_metrics"],
    "asya_sidecar.outgoing": [
        "Names", "ON_EXHAUSTED", "Outgoing", "RETRY", "ROUTING", "SINK", "SUMP", "encode",
        "fly_count", "with_fly_count",
    ],
    "asya_sidecar.reports": [
        "fly", "fly_total", "legacy", "progress", "resolve_gateway", "safe_gateway_url",
        "status_event", "terminal",
    ],
    "asya_sidecar.resiliency": [
        "Backoff", "Decision", "Exhausted", "NoPolicy", "Policy", "Resiliency", "Retry",
        "Rule", "backoff_delay", "decide", "match_policy", "parse_policies", "parse_rules",
        "pattern_matches",
    ],
    "asya_sidecar.routing": [
        "FANOUT_NAMESPACE", "FAN_IN", "FIRST_ATTEMPT", "GATEWAY_URL", "MESH_STATUS",
        "Names", "ON_EXHAUSTED", "Outgoing", "RETRY", "ROUTE_OVERRIDE", "ROUTE_RESOLVED",
        "ROUTING", "SINK", "SUMP", "deadline_expired", "deadline_left", "encode",
        "error_details", "fanout_id", "fly_count", "no_output", "parse_message",
        "parse_rfc3339", "preflight", "prepare_input", "rfc3339", "route_emit",
        "route_mismatch", "runtime_error", "runtime_lost", "serves", "sump", "timed_out",
        "with_fly_count",
    ],
    "asya_sidecar.runner": ["RuntimeHung", "WAITING_LOG_EVERY", "run_sidecar"],
    "asya_sidecar.runtime_client": [
        "InvokeNotDelivered", "ProtocolMismatch", "RuntimeConnection", "RuntimeLost",
        "RuntimeUnavailable", "connect", "wait_ready",
    ],
    "asya_sidecar.lease": ["LeaseKeeper"],
    "asya_sidecar.worker": ["Lifecycle", "RuntimeHung", "Worker"],
}
# fmt: on


# Classes and functions a module defines without a leading underscore but does not export:
# internal ones still to be renamed `_name` (their modules were outside the change that added
# this check). Do not add to this list: export the name or give it a leading underscore.
NOT_EXPORTED: dict[str, set[str]] = {
    "asya_dev.cli": {"dev", "stream_prompt"},
    "asya_gateway.state": {"rec_deadline"},
}


def discovered() -> list[str]:
    """Every module of the packages, found on disk (so a new module cannot be missed)."""
    out = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_every_module_is_listed_or_exempt() -> None:
    found = set(discovered())
    assert found - set(EXEMPT) - set(SURFACE) == set(), "modules without __all__ or not listed"
    assert set(SURFACE) | set(EXEMPT) <= found, "listed modules that no longer exist"
    assert not set(SURFACE) & set(EXEMPT)
    assert all(names == sorted(names) for names in SURFACE.values())


@pytest.mark.parametrize("name", sorted(SURFACE))
def test_module_exports_exactly_what_is_listed(name: str) -> None:
    mod = importlib.import_module(name)
    assert mod.__doc__, f"{name} has no docstring"
    assert hasattr(mod, "__all__"), f"{name} defines no __all__"
    assert sorted(mod.__all__) == SURFACE[name]
    assert len(set(mod.__all__)) == len(mod.__all__), "a name listed twice in __all__"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    exported = [getattr(mod, n) for n in mod.__all__]
    own = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(v) or inspect.isfunction(v))
        and v.__module__ == name
        and not any(v is e for e in exported)  # an alias (`S = ConnState`) of an exported one
    }
    assert own == NOT_EXPORTED.get(name, set()), f"{name} defines but does not export {own}"
