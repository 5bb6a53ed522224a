"""Hypothesis against the live app: arbitrary auth headers never get a 5xx, never get in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from .helpers import MESH_TOKEN, threaded_gateway

pytestmark = pytest.mark.timeout(300)
_KEYS = ["key-alice-0123456789", "key-bob-9876543210", MESH_TOKEN]
_latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
_token = st.one_of(
    _latin1,
    st.sampled_from(_KEYS).map(lambda k: k[:-1]),  # almost a key
    st.sampled_from(_KEYS).map(lambda k: k + "x"),
    st.sampled_from(_KEYS).map(lambda k: k.upper()),
    st.just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."),  # alg: none
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", _latin1, _latin1, _latin1),
)
_auth = st.one_of(
    st.builds(
        lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "bearer", "Basic", "", "B"]), _token
    ),
    _latin1,
)


def _bad_octet(value: str) -> bool:
    return any(c == "\x7f" or (c < " " and c != "\t") for c in value)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, str]]:
    with threaded_gateway() as url:
        headers = {"X-API-Key": _KEYS[0]}
        r = httpx.post(f"{url}/api/v1/mesh", json={"route": ["a"]}, headers=headers)
        assert r.status_code == 201
        yield url, r.json()["id"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    auth=st.one_of(st.none(), _auth),
    api_key=st.one_of(st.none(), _token),
    target=st.sampled_from(["get", "create", "events", "a2a", "mcp", "feed"]),
)
def test_fuzzed_auth_headers_never_5xx_never_in(
    live: tuple[str, str], auth: str | None, api_key: str | None, target: str
) -> None:
    url, tid = live
    headers: list[tuple[bytes, bytes]] = []
    if auth is not None:
        headers.append((b"authorization", auth.encode("latin-1")))
    if api_key is not None:
        headers.append((b"x-api-key", api_key.encode("latin-1")))
    method, path, body = {
        "get": ("GET", f"/api/v1/mesh/{tid}", None),
        "create": ("POST", "/api/v1/mesh", b'{"route": ["a"]}'),
        "events": ("POST", f"/api/v1/mesh/{tid}/events", b'{"type":"status","status":"succeeded"}'),
        "a2a": ("POST", "/a2a", b'{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{}}'),
        "mcp": ("POST", "/mcp", b'{"jsonrpc":"2.0","id":1,"method":"ping"}'),
        "feed": ("GET", "/api/v1/mesh/feed", None),
    }[target]
    with httpx.Client(timeout=10) as c:
        req = c.build_request(method, url + path, content=body, headers=headers)
        try:
            r = c.send(req, stream=True)
        except httpx.LocalProtocolError:
            reject()  # a header HTTP itself forbids (e.g. leading space): never sent
        # A value with a control character (DEL) is not a valid HTTP field value (RFC 9110
        # field-vchar): the server's HTTP parser refuses the request (400), before any app.
        malformed = any(_bad_octet(v) for v in (auth, api_key) if v is not None)
        try:
            assert r.status_code < 500, (r.status_code, auth, api_key)
            want = {400, 401} if malformed else {401}
            assert r.status_code in want, (target, auth, api_key, r.status_code)
        finally:
            r.close()
