"""JSON-RPC 2.0 for A2A (pure): bytes in → a validated `Call` or an `RpcError`; answers out.

The one place that chooses error codes. Methods of both versions map to one operation each;
params are checked with the official SDK's own types (v1.0 protobuf messages, v0.3 pydantic
models), so what it refuses we refuse, with the field named. Knows nothing about tasks or HTTP.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
import pydantic
from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as pb
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import Message as ProtoMessage

from .model import Version
from .translate import norm_message

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TASK_NOT_FOUND: Final = -32001
TASK_NOT_CANCELABLE: Final = -32002
PUSH_NOT_SUPPORTED: Final = -32003
UNSUPPORTED_OPERATION: Final = -32004
EXTENDED_CARD_NOT_CONFIGURED: Final = -32007

_REASON: Final = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    TASK_NOT_FOUND: "TASK_NOT_FOUND",
    TASK_NOT_CANCELABLE: "TASK_NOT_CANCELABLE",
    PUSH_NOT_SUPPORTED: "PUSH_NOTIFICATION_NOT_SUPPORTED",
    UNSUPPORTED_OPERATION: "UNSUPPORTED_OPERATION",
    EXTENDED_CARD_NOT_CONFIGURED: "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
}

Op = Literal["send", "stream", "get", "cancel", "subscribe", "list", "push", "extended_card"]
RequestId = str | int | None

#: method → (operation, protocol version).
METHODS: Final[dict[str, tuple[Op, Version]]] = {
    "SendMessage": ("send", "1.0"),
    "SendStreamingMessage": ("stream", "1.0"),
    "GetTask": ("get", "1.0"),
    "CancelTask": ("cancel", "1.0"),
    "SubscribeToTask": ("subscribe", "1.0"),
    "ListTasks": ("list", "1.0"),
    "CreateTaskPushNotificationConfig": ("push", "1.0"),
    "GetTaskPushNotificationConfig": ("push", "1.0"),
    "ListTaskPushNotificationConfigs": ("push", "1.0"),
    "DeleteTaskPushNotificationConfig": ("push", "1.0"),
    "GetExtendedAgentCard": ("extended_card", "1.0"),
    "message/send": ("send", "0.3"),
    "message/stream": ("stream", "0.3"),
    "tasks/get": ("get", "0.3"),
    "tasks/cancel": ("cancel", "0.3"),
    "tasks/resubscribe": ("subscribe", "0.3"),
    "tasks/list": ("list", "0.3"),
    "tasks/pushNotificationConfig/set": ("push", "0.3"),
    "tasks/pushNotificationConfig/get": ("push", "0.3"),
    "tasks/pushNotificationConfig/list": ("push", "0.3"),
    "tasks/pushNotificationConfig/delete": ("push", "0.3"),
    "agent/getAuthenticatedExtendedCard": ("extended_card", "0.3"),
}

_V1_PARAMS: Final[dict[Op, type[ProtoMessage]]] = {
    "send": pb.SendMessageRequest,
    "stream": pb.SendMessageRequest,
    "get": pb.GetTaskRequest,
    "cancel": pb.CancelTaskRequest,
    "subscribe": pb.SubscribeToTaskRequest,
    "list": pb.ListTasksRequest,
}
_V03_PARAMS: Final[dict[Op, type[pydantic.BaseModel]]] = {
    "send": v03.MessageSendParams,
    "stream": v03.MessageSendParams,
    "get": v03.TaskQueryParams,
    "cancel": v03.TaskIdParams,
    "subscribe": v03.TaskIdParams,
}


class RpcError(Exception):
    """A JSON-RPC error answer: `code` and a message naming the problem."""

    def __init__(self, code: int, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class Call(msgspec.Struct, kw_only=True, frozen=True):
    """A valid request: its id, operation, dialect and params (as sent)."""

    id: RequestId
    method: str
    op: Op
    version: Version
    params: dict[str, Any]


_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _pydantic_problem(exc: pydantic.ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(x) for x in e.get("loc", ()))
    return f"`{where}`: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid"))


def _check_params(op: Op, version: Version, params: dict[str, Any], rid: RequestId) -> None:
    try:
        if version == "1.0" and op in _V1_PARAMS:
            ParseDict(params, _V1_PARAMS[op]())
        elif version == "0.3" and op in _V03_PARAMS:
            _V03_PARAMS[op].model_validate(params)
    except ParseError as exc:
        raise RpcError(INVALID_PARAMS, f"invalid params: {_clip(str(exc))}", rid) from None
    except pydantic.ValidationError as exc:
        raise RpcError(INVALID_PARAMS, f"invalid params: {_pydantic_problem(exc)}", rid) from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise RpcError(INVALID_PARAMS, f"invalid params: {_clip(str(exc))}", rid) from None
    if op in ("send", "stream"):
        m = params.get("message")
        if not isinstance(m, dict):
            raise RpcError(INVALID_PARAMS, "invalid params: `message` is required", rid)
        if not isinstance(m.get("parts"), list) or not m["parts"]:
            raise RpcError(INVALID_PARAMS, "invalid params: `message.parts` must not be empty", rid)
        if not (m.get("messageId") or m.get("message_id")):
            raise RpcError(INVALID_PARAMS, "invalid params: `message.messageId` is required", rid)
    elif op in ("get", "cancel", "subscribe") and not (
        isinstance(params.get("id"), str) and params["id"]
    ):
        raise RpcError(INVALID_PARAMS, "invalid params: `id` (the task id) is required", rid)


def parse_call(body: bytes) -> Call:
    """One JSON-RPC request; raises RpcError (-32700/-32600/-32601/-32602) naming the problem."""
    try:
        obj = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise RpcError(PARSE_ERROR, "parse error: the body is not valid JSON") from None
    if isinstance(obj, list):
        raise RpcError(INVALID_REQUEST, "invalid request: batch requests are not supported")
    if not isinstance(obj, dict):
        raise RpcError(INVALID_REQUEST, "invalid request: expected a JSON-RPC request object")
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int | None):
        raise RpcError(INVALID_REQUEST, "invalid request: `id` must be a string, number or null")
    if obj.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'invalid request: `jsonrpc` must be "2.0"', rid)
    method = obj.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "invalid request: `method` must be a string", rid)
    if method not in METHODS:
        raise RpcError(METHOD_NOT_FOUND, f"method not found: {_clip(method, 80)!r}", rid)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "invalid params: `params` must be an object", rid)
    op, version = METHODS[method]
    _check_params(op, version, params, rid)
    return Call(id=rid, method=method, op=op, version=version, params=params)


def call_message(call: Call) -> dict[str, Any]:
    """The normalized message of a send (checked by `parse_call`)."""
    return norm_message(call.params["message"])


def call_skill(call: Call) -> str | None:
    """The flow a send on `/a2a` names: `params.metadata.skill` (or the message's)."""
    for meta in (call.params.get("metadata"), call.params["message"].get("metadata")):
        if isinstance(meta, dict) and isinstance(meta.get("skill"), str):
            return str(meta["skill"])
    return None


def history_length(call: Call) -> int | None:
    raw = call.params.get("historyLength", call.params.get("history_length"))
    if raw is None and isinstance(call.params.get("configuration"), dict):
        conf = call.params["configuration"]
        raw = conf.get("historyLength", conf.get("history_length"))
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None


def returns_immediately(call: Call) -> bool:
    conf = call.params.get("configuration")
    if not isinstance(conf, dict):
        return False
    v = conf.get("returnImmediately", conf.get("return_immediately"))
    if v is None and conf.get("blocking") is False:  # v0.3 spelling
        return True
    return v is True


def result_bytes(request_id: RequestId, result: Any) -> bytes:
    return _encoder.encode({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_bytes(error: RpcError, version: Version = "1.0") -> bytes:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if version == "1.0" and error.code in _REASON:
        body["data"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": _REASON[error.code],
                "domain": "a2a-protocol.org",
            }
        ]
    return _encoder.encode({"jsonrpc": "2.0", "id": error.request_id, "error": body})


def peek_version(body: bytes) -> Version:
    """The dialect an unparseable request probably speaks (for its error's shape)."""
    return "0.3" if b'"message/' in body or b'"tasks/' in body else "1.0"


__all__ = [
    "EXTENDED_CARD_NOT_CONFIGURED",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHODS",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PUSH_NOT_SUPPORTED",
    "TASK_NOT_CANCELABLE",
    "TASK_NOT_FOUND",
    "UNSUPPORTED_OPERATION",
    "Call",
    "Op",
    "RequestId",
    "RpcError",
    "call_message",
    "call_skill",
    "error_bytes",
    "history_length",
    "parse_call",
    "peek_version",
    "result_bytes",
    "returns_immediately",
]
