"""A full run (`asya dev`: gateway with keys, a mesh token and a mesh listener; runtimes and
sidecars) at DEBUG: a task by key streams to its end, other callers are refused, and none of the
secrets appears in any process's output."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.a2a.conftest import free_port
from tests.conftest import console_script

from .helpers import ALICE, BOB, KEYS, MESH_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SECRETS = ["key-alice-0123456789", "key-bob-9876543210", MESH_TOKEN]


def test_full_run_with_keys_and_mesh_token(short_tmp: Path, subprocess_env: dict[str, str]) -> None:
    port, mport = free_port(), free_port()
    env = subprocess_env | {
        "ASYA_LOG_LEVEL": "debug",
        "ASYA_GATEWAY_API_KEYS": KEYS,
        "ASYA_GATEWAY_MESH_TOKEN": MESH_TOKEN,
    }
    argv = [console_script("asya"), "dev", "--route", "tokens", "--port", str(port)]
    argv += ["--mesh-port", str(mport), "--dir", str(short_tmp / "dev"), "--verbose"]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "open http://" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert ready.wait(60) and proc.poll() is None, "".join(lines)[-3000:]
        url, mesh = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}"
        with httpx.Client(timeout=30) as c:
            body = {"route": ["tokens"], "payload": {"prompt": "why", "token_delay": 0.01}}
            assert c.post(f"{url}/api/v1/mesh", json=body).status_code == 401
            r = c.post(f"{url}/api/v1/mesh", json=body, headers=ALICE)
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            forged = {"type": "status", "status": "succeeded", "data": {"result": "forged"}}
            assert (
                c.post(f"{mesh}/api/v1/mesh/{tid}/events", json=forged, headers=ALICE).status_code
                == 401
            )
            assert c.get(f"{url}/stream/{tid}", headers=BOB).status_code == 404
            final = ""
            with c.stream("GET", f"{url}/stream/{tid}?last_event_id=0", headers=ALICE) as s:
                assert s.status_code == 200
                for line in s.iter_lines():
                    if line.startswith("data:") and '"status":"succeeded"' in line.replace(" ", ""):
                        final = line
                        break
            assert "You asked: why" in final
        # The feed needs the token too: the sidecars connect to it (after their first try,
        # made before the gateway listened).
        deadline = time.monotonic() + 20
        while not any("task feed connected" in line for line in lines):
            assert time.monotonic() < deadline, "no sidecar connected to the feed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(10)
    out = "".join(lines)
    assert f":{mport}/api/v1/mesh/feed" in out  # the sidecars use the mesh listener
    for secret in SECRETS:
        assert secret not in out, "a secret is in the run's output"
