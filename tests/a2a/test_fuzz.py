"""Fuzz the JSON-RPC surface: the pure parser, then the live endpoint over HTTP.

Every answer must be a well-formed JSON-RPC response (HTTP 200, `jsonrpc`, `id`, exactly one of
`result`/`error`, an integer code and a message), and the door must still serve afterwards.
Cases: `ASYA_FUZZ_EXAMPLES` (the fault suite's knob), else 10,000 under CI and 500 locally.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

import httpx
import pytest
from a2a.compat.v0_3 import types as v03
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asya_gateway.a2a import rpc
from asya_gateway.a2a.rpc import Call, RpcError

from .shapes import check_response


def _cases() -> int:
    raw = os.environ.get("ASYA_FUZZ_EXAMPLES", "").strip()
    if raw:
        return int(raw)
    return 10_000 if os.environ.get("CI") else 500


CASES: Final = _cases()

_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
_json = st.recursive(
    _scalar,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_part = st.one_of(
    st.builds(lambda t: {"text": t}, st.text(max_size=8)),
    st.builds(lambda t: {"kind": "text", "text": t}, st.text(max_size=8)),
    st.builds(lambda d: {"data": d}, _json),
    st.dictionaries(st.sampled_from(["text", "data", "kind", "url", "raw", "file"]), _json),
)
_message = st.fixed_dictionaries(
    {},
    optional={
        "messageId": st.one_of(st.text(max_size=6), _json),
        "role": st.sampled_from(["ROLE_USER", "ROLE_AGENT", "user", "agent", "x", 3]),
        "parts": st.one_of(st.lists(_part, max_size=3), _json),
        "taskId": st.one_of(st.text(max_size=6), _json),
        "contextId": st.text(max_size=6),
        "kind": st.just("message"),
    },
)
_params = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "message": st.one_of(_message, _json),
            "metadata": st.one_of(
                st.fixed_dictionaries({"skill": st.sampled_from(["chat", "other", "ghost"])}),
                _json,
            ),
            "id": st.one_of(st.text(max_size=6), _json),
            "historyLength": st.one_of(st.integers(-2, 5), _json),
            "configuration": st.one_of(
                st.just({"returnImmediately": True}), st.just({"blocking": False}), _json
            ),
        },
    ),
)
_request = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), _json),
        "id": st.one_of(st.integers(), st.text(max_size=6), st.none(), _json),
        "method": st.one_of(st.sampled_from(sorted(rpc.METHODS)), st.text(max_size=12), _json),
        "params": _params,
    },
)
_body = st.one_of(
    st.builds(lambda r: json.dumps(r).encode(), _request),
    st.builds(lambda r: json.dumps(r).encode(), _json),
    st.binary(max_size=64),
    st.builds(lambda r, n: json.dumps(r).encode()[:n], _request, st.integers(0, 40)),
)


def _check_error_bytes(data: bytes) -> None:
    obj = json.loads(data)
    check_response(obj)
    err = obj["error"]
    # the v0.3 SDK's own model of an error response accepts it too
    v03.JSONRPCErrorResponse.model_validate(
        {**obj, "error": {k: err[k] for k in ("code", "message")}}
    )


@settings(max_examples=min(CASES, 2_000), deadline=None)
@given(body=_body)
def test_parser_answers_everything(body: bytes) -> None:
    try:
        call = rpc.parse_call(body)
    except RpcError as exc:
        assert exc.code in (-32700, -32600, -32601, -32602)
        _check_error_bytes(rpc.error_bytes(exc, rpc.peek_version(body)))
    else:
        assert isinstance(call, Call) and call.method in rpc.METHODS


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_endpoint_fuzz(threaded_door: str) -> None:
    url = threaded_door
    with httpx.Client(timeout=10) as http:

        @settings(
            max_examples=CASES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(body=_body, path=st.sampled_from(["/a2a", "/a2a/chat", "/a2a/ghost"]))
        def one(body: bytes, path: str) -> None:
            with http.stream("POST", url + path, content=body) as r:
                assert r.status_code == 200, (body, r.status_code)
                if r.headers["content-type"].startswith("text/event-stream"):
                    obj = _first_event(r)
                else:
                    obj = json.loads(r.read())
            check_response(obj)

        one()
        assert http.get(url + "/.well-known/agent-card.json").status_code == 200
        ok = http.post(url + "/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks"})
        check_response(ok.json())
        assert "result" in ok.json()


def _first_event(r: httpx.Response) -> dict[str, Any]:
    for line in r.iter_lines():
        if line.startswith("data: "):
            obj: dict[str, Any] = json.loads(line[6:])
            return obj
    raise AssertionError("a stream without a single event")
