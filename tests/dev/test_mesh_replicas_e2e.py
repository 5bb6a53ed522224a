"""`asya dev --gateways 2 --database-url postgresql://…`: two gateway replicas behind the local
mesh on one real PostgreSQL; a task created on one streams every token on the other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from ..conftest import console_script
from ..gateway.stores import database_url
from .test_mesh_e2e import free_port, wait_gone

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_a_task_created_on_one_replica_streams_on_the_other(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url("postgres", str(short_tmp)) as url:
        port = free_port() // 2 * 2  # the replicas take PORT and PORT+1
        workdir = str(short_tmp / "dev")
        argv = [console_script("asya"), "dev", "--route", "tokens", "--gateways", "2"]
        argv += ["--database-url", url, "--port", str(port), "--dir", workdir]
        proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; stopped below)
            argv, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert proc.stdout is not None
            ready = await anyio.to_thread.run_sync(
                lambda: any("open http://" in line for line in proc.stdout)  # type: ignore[union-attr]
            )
            assert ready, f"asya dev ended before the mesh was ready (code {proc.wait()})"
            a, b = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as c:
                body = {"route": ["tokens"], "payload": {"prompt": "two replicas"}}
                created = await c.post(f"{b}/api/v1/mesh", json=body)
                assert created.status_code == 201, created.text
                tid = created.json()["id"]
                tokens: list[str] = []
                final: dict[str, object] = {}
                with anyio.fail_after(60):
                    async with c.stream("GET", f"{a}/stream/{tid}?last_event_id=0") as s:
                        event = ""
                        async for line in s.aiter_lines():
                            if line.startswith("event: "):
                                event = line[7:]
                            elif line.startswith("data: ") and event == "partial":
                                tokens.append(msgspec.json.decode(line[6:])["text"])
                            elif line.startswith("data: ") and event == "update":
                                final = msgspec.json.decode(line[6:])
                                if final["status"] == "succeeded":
                                    break
            assert final.get("status") == "succeeded", final
            result = final["result"]
            assert isinstance(result, dict)
            assert result["text"].startswith("You asked: two replicas.")
            assert "".join(tokens) == result["text"] and len(tokens) > 10  # every token, in order
        finally:
            proc.terminate()
            proc.wait(20)
            assert wait_gone(workdir) == []
