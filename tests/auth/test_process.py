"""`asya-gateway run` as a real process with keys, a JWT key, a mesh token and --mesh-port:
the start warnings, the two listeners, and no secret anywhere in its output (DEBUG logging)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import anyio
import httpx
import jwt
import pytest

from asya_mesh.transports import TransportConfig, open_transport, queue_name
from tests.a2a.conftest import free_port

from .helpers import ALICE, KEYS, MESH, MESH_TOKEN

pytestmark = pytest.mark.timeout(90)
JWT_SECRET = "jwt-secret-for-the-log-test-0123456789"
GATEWAY = os.path.join(os.path.dirname(sys.executable), "asya-gateway")
AUDIENCE, ISSUER = "asya-log-test", "https://idp.log-test.example"
#: Valid for the gateway below (audience and issuer set): a bearer JWT is a secret too.
JWT_TOKEN = jwt.encode(
    {"sub": "carol", "exp": int(time.time()) + 3600, "aud": AUDIENCE, "iss": ISSUER},
    JWT_SECRET,
    algorithm="HS256",
)
#: Signed right but for another audience: refused, and not logged either.
JWT_OTHER_AUD = jwt.encode(
    {"sub": "carol", "exp": int(time.time()) + 3600, "aud": "elsewhere", "iss": ISSUER},
    JWT_SECRET,
    algorithm="HS256",
)
SECRETS = [
    "key-alice-0123456789",
    "key-bob-9876543210",
    MESH_TOKEN,
    JWT_SECRET,
    JWT_TOKEN,
    JWT_OTHER_AUD,
]


def _run(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], int, int]:
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        [GATEWAY, "run", "--port", str(port), *args, "--mesh-port", str(mport)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{mport}/health").status_code == 200:
                return proc, port, mport
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)


def _declare(db: str, actor: str) -> None:
    async def declare() -> None:
        t = await open_transport(TransportConfig(sqlite_path=db))
        try:
            await t.declare(queue_name("default", actor))
        finally:
            await t.aclose()

    anyio.run(declare)


def test_full_run_never_logs_a_secret_and_warns_at_start() -> None:
    tmp = tempfile.mkdtemp(dir="/tmp")
    env = {
        **os.environ,
        "ASYA_SQLITE_PATH": f"{tmp}/q.db",
        "ASYA_LOG_LEVEL": "debug",
        "ASYA_GATEWAY_API_KEYS": KEYS,
        "ASYA_GATEWAY_JWT_KEY": f"hs256:{JWT_SECRET}",
        "ASYA_GATEWAY_JWT_AUDIENCE": AUDIENCE,
        "ASYA_GATEWAY_JWT_ISSUER": ISSUER,
        "ASYA_GATEWAY_MESH_TOKEN": MESH_TOKEN,
        "ASYA_GATEWAY_HOST": "127.0.0.1",
    }
    proc, port, mport = _run(env)
    try:
        _declare(f"{tmp}/q.db", "a")  # as actor a's sidecar would: a create needs its queue
        base, mesh = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}"
        with httpx.Client(timeout=10) as c:
            r = c.post(f"{base}/api/v1/mesh", json={"route": ["a"]}, headers=ALICE)
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            ev = {"type": "status", "status": "succeeded", "data": {"result": 1}}
            assert (
                c.post(f"{mesh}/api/v1/mesh/{tid}/events", json=ev, headers=ALICE).status_code
                == 401
            )
            assert (
                c.post(f"{mesh}/api/v1/mesh/{tid}/events", json=ev, headers=MESH).status_code == 204
            )
            assert c.get(f"{base}/api/v1/mesh/{tid}", headers=ALICE).json()["status"] == "succeeded"
            for bad in ("Bearer key-alice-012345678", f"Bearer {MESH_TOKEN}x", "Basic xyz"):
                assert (
                    c.get(f"{base}/api/v1/mesh/{tid}", headers={"Authorization": bad}).status_code
                    == 401
                )
            # A valid JWT (audience and issuer as configured) owns its task; Alice's key does
            # not see it; a JWT for another audience is refused, naming the claim.
            carol = {"Authorization": f"Bearer {JWT_TOKEN}"}
            r = c.post(f"{base}/api/v1/mesh", json={"route": ["a"]}, headers=carol)
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            assert c.get(f"{base}/api/v1/mesh/{jid}", headers=carol).status_code == 200
            assert c.get(f"{base}/api/v1/mesh/{jid}", headers=ALICE).status_code == 404
            r = c.get(f"{base}/api/v1/flows", headers={"Authorization": f"Bearer {JWT_OTHER_AUD}"})
            assert r.status_code == 401 and "`aud`" in r.json()["error"]
            jwtish = "Bearer a.b.c"
            assert (
                c.get(f"{base}/api/v1/flows", headers={"Authorization": jwtish}).status_code == 401
            )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"sidecar endpoints on port {mport}" in out, out
    for secret in SECRETS:
        assert secret not in out, f"a secret is in the gateway's output:\n{out}"


def test_start_warnings() -> None:
    tmp = tempfile.mkdtemp(dir="/tmp")
    base_env = {**os.environ, "ASYA_SQLITE_PATH": f"{tmp}/q.db"}
    for key in ("ASYA_GATEWAY_API_KEYS", "ASYA_GATEWAY_JWT_KEY", "ASYA_GATEWAY_MESH_TOKEN"):
        base_env.pop(key, None)
    proc, _, _ = _run({**base_env, "ASYA_GATEWAY_HOST": "0.0.0.0"})
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert "beyond loopback" in out and "no client credentials" in out
    proc, _, _ = _run({**base_env, "ASYA_GATEWAY_API_KEYS": KEYS})
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert "ASYA_GATEWAY_MESH_TOKEN is not" in out and "beyond loopback" not in out
    bad = subprocess.run(
        [GATEWAY, "run", "--port", str(free_port())],
        env={**base_env, "ASYA_GATEWAY_API_KEYS": "a:x,b:x"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        bad.returncode == 2
        and "repeats the key of 'a'" in bad.stderr
        and "x" not in bad.stderr.split(":")[-1]
    )
