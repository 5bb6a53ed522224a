"""Every REST/SSE endpoint × {no key, wrong key, other owner's key, right key}, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from .helpers import ALICE, ALICE_X, BOB, MESH, WRONG, gateway

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

#: (method, path template, body, status with the mesh token, status for the owner): the client
#: endpoints of one task. The mesh token is a credential only for the pre-flight GET; the owner's
#: resume answers 409 (the task is not paused), a cancel is idempotent.
TASK_ENDPOINTS = [
    ("GET", "/api/v1/mesh/{id}", None, 200, 200),
    ("DELETE", "/api/v1/mesh/{id}", None, 401, 204),
    ("POST", "/api/v1/mesh/{id}/resume", {"payload": {"ok": True}}, 401, 409),
    ("GET", "/stream/{id}", None, 401, 200),
    ("GET", "/api/v1/mesh/{id}/events", None, 401, 200),
    ("GET", "/mesh/{id}/stream", None, 401, 200),
]
#: The sidecars' endpoints.
MESH_ENDPOINTS = [
    ("POST", "/api/v1/mesh/{id}/events", {"type": "status", "status": "received", "data": {}}),
    ("POST", "/mesh/{id}/fly", {"partial": True}),
    ("POST", "/mesh/{id}/progress", {"status": "received", "actor": "a", "prev": [], "next": []}),
    ("POST", "/mesh/{id}/final", {"status": "succeeded", "result": 1}),
]


async def _call(
    c: httpx.AsyncClient, method: str, url: str, body: object, headers: dict[str, str]
) -> int:
    content = None if body is None else json.dumps(body).encode()
    async with c.stream(method, url, content=content, headers=headers) as r:
        return r.status_code  # a stream is left at once: only the status matters here


async def _task(c: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    r = await c.post(f"{url}/api/v1/mesh", json={"route": ["a"]}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize(("method", "path", "body", "mesh", "owner"), TASK_ENDPOINTS)
async def test_task_endpoints_by_caller(
    method: str, path: str, body: object, mesh: int, owner: int
) -> None:
    async with gateway() as gw, httpx.AsyncClient(timeout=10) as c:
        tid = await _task(c, gw.url, ALICE)
        url = gw.url + path.format(id=tid)
        for who in ({}, WRONG, {"Authorization": "Basic abc"}, {"X-API-Key": ""}):
            assert await _call(c, method, url, body, who) == 401, who
        assert await _call(c, method, url, body, BOB) == 404  # no existence leak
        assert await _call(c, method, url, body, MESH) == mesh
        assert await _call(c, method, url, body, ALICE) == owner
        assert await _call(c, method, url, body, ALICE_X) == owner


async def test_401_bodies_name_the_problem_and_challenge() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"]})
        assert r.status_code == 401 and "missing credentials" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await c.get(f"{gw.url}/api/v1/flows", headers=WRONG)
        assert r.status_code == 401 and "unknown API key" in r.json()["error"]
        assert "not-a-key" not in r.text
        for path in ("/api/v1/stats", "/api/v1/flows"):
            assert (await c.get(gw.url + path)).status_code == 401
            assert (await c.get(gw.url + path, headers=BOB)).status_code == 200


async def test_public_endpoints_stay_public() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        assert (await c.get(f"{gw.url}/health")).text == "OK"
        assert (await c.get(f"{gw.url}/")).status_code == 200  # the page asks for the key
        card = (await c.get(f"{gw.url}/.well-known/agent-card.json")).json()
        assert set(card["securitySchemes"]) == {"apiKey", "bearer"}
        assert (await c.get(f"{gw.url}/a2a/chat/.well-known/agent-card.json")).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), MESH_ENDPOINTS)
async def test_sidecar_endpoints_take_only_the_mesh_token(
    method: str, path: str, body: object
) -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        tid = await _task(c, gw.url, ALICE)
        url = gw.url + path.format(id=tid)
        for who in ({}, WRONG, ALICE, ALICE_X, BOB):
            assert await _call(c, method, url, body, who) == 401, who
        assert await _call(c, method, url, body, MESH) < 300


async def test_a_forged_success_with_a_client_key_is_refused() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        tid = await _task(c, gw.url, ALICE)
        forged = {"type": "status", "status": "succeeded", "data": {"result": "forged"}}
        r = await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=forged, headers=ALICE)
        assert r.status_code == 401 and "mesh token" in r.json()["error"]
        view = (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).json()
        assert view["status"] == "pending" and "result" not in view


async def test_feed_and_preflight() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        tid = await _task(c, gw.url, ALICE)
        assert await _call(c, "GET", f"{gw.url}/api/v1/mesh/feed", None, ALICE) == 401
        assert await _call(c, "GET", f"{gw.url}/api/v1/mesh/feed", None, MESH) == 200
        # The pre-flight: the owner's key or the mesh token (for any task); the mesh token is
        # no client credential anywhere else.
        r = await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=MESH)
        assert r.status_code == 200 and r.json()["status"] == "pending"
        r = await c.post(f"{gw.url}/api/v1/mesh", json={"route": ["a"]}, headers=MESH)
        assert r.status_code == 401
        assert (await c.delete(f"{gw.url}/api/v1/mesh/{tid}", headers=MESH)).status_code == 401


async def test_jwt_subjects_own_their_tasks() -> None:
    import time

    import jwt

    secret = "s3cret-hs256-key-for-tests-0123456789"
    token = jwt.encode({"sub": "carol", "exp": time.time() + 60}, secret, algorithm="HS256")
    other = jwt.encode({"sub": "dave", "exp": time.time() + 60}, secret, algorithm="HS256")
    expired = jwt.encode({"sub": "carol", "exp": time.time() - 60}, secret, algorithm="HS256")
    none_alg = jwt.encode({"sub": "carol"}, key="", algorithm="none")
    async with gateway(jwt_key=f"hs256:{secret}") as gw, httpx.AsyncClient() as c:
        carol = {"Authorization": f"Bearer {token}"}
        tid = await _task(c, gw.url, carol)
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=carol)).status_code == 200
        dave = {"Authorization": f"Bearer {other}"}
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=dave)).status_code == 404
        r = await c.get(
            f"{gw.url}/api/v1/mesh/{tid}", headers={"Authorization": f"Bearer {expired}"}
        )
        assert r.status_code == 401 and "expired" in r.json()["error"]
        r = await c.get(
            f"{gw.url}/api/v1/mesh/{tid}", headers={"Authorization": f"Bearer {none_alg}"}
        )
        assert r.status_code == 401
        # A key named "carol" is another namespace than the JWT subject "carol".
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 404


async def test_nothing_configured_is_open_as_before() -> None:
    async with gateway(api_keys=None, mesh_token=None) as gw, httpx.AsyncClient() as c:
        tid = await _task(c, gw.url, {})
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}")).status_code == 200
        ev = {"type": "status", "status": "received", "data": {}}
        assert (await c.post(f"{gw.url}/api/v1/mesh/{tid}/events", json=ev)).status_code == 204
        card = (await c.get(f"{gw.url}/.well-known/agent-card.json")).json()
        assert "securitySchemes" not in card


async def test_mesh_port_serves_only_the_sidecar_endpoints() -> None:
    async with gateway(mesh_port=True) as gw, httpx.AsyncClient() as c:
        assert gw.mesh_url is not None
        tid = await _task(c, gw.url, ALICE)
        # The envelope tells sidecars to report to the mesh listener.
        _, body = gw.enqueued[-1]
        assert json.loads(body)["headers"]["x-asya-gateway-url"] == gw.mesh_url
        ev = {"type": "status", "status": "received", "data": {}}
        events = f"/api/v1/mesh/{tid}/events"
        # Client listener: no sidecar endpoint at all, not even with the token.
        assert (await c.post(gw.url + events, json=ev, headers=MESH)).status_code == 404
        assert (await c.get(f"{gw.url}/api/v1/mesh/{tid}", headers=MESH)).status_code == 401
        # Mesh listener: only the mesh token, and no client endpoint.
        assert (await c.post(gw.mesh_url + events, json=ev, headers=ALICE)).status_code == 401
        assert (await c.post(gw.mesh_url + events, json=ev, headers=MESH)).status_code == 204
        r = await c.get(f"{gw.mesh_url}/api/v1/mesh/{tid}", headers=MESH)
        assert r.status_code == 200 and r.json()["status"] == "running"
        assert (await c.get(f"{gw.mesh_url}/api/v1/mesh/{tid}", headers=ALICE)).status_code == 401
        r = await c.post(f"{gw.mesh_url}/api/v1/mesh", json={"route": ["a"]}, headers=ALICE)
        assert r.status_code == 404
        assert (await c.get(f"{gw.mesh_url}/", headers=MESH)).status_code == 404
        assert (await c.get(f"{gw.mesh_url}/health")).status_code == 200


async def test_unknown_paths_and_methods_need_a_key_too() -> None:
    async with gateway() as gw, httpx.AsyncClient() as c:
        for method, path in [
            ("GET", "/nope"),
            ("HEAD", "/api/v1/mesh/x"),
            ("POST", "/api/v1/mesh/x/events/"),
            ("GET", "/index.html/../api/v1/stats"),
        ]:
            r = await c.request(method, gw.url + path)
            assert r.status_code == 401, (method, path, r.status_code)
