"""The local mesh's gateway end to end: `asya dev --gateways 2` (two replicas on one real
PostgreSQL: a task created on one streams every token on the other), and a task canceled or
past its deadline at the gateway stops the handler running it (its `finally` runs)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from ..conftest import console_script
from ..gateway.stores import database_url
from .test_mesh_e2e import free_port, wait_gone

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]


def free_ports(n: int) -> int:
    """A port P with P .. P+n-1 all free right now (replicas take PORT, PORT+1, ...)."""
    for _ in range(50):
        first = free_port()
        socks = []
        try:
            for port in range(first, first + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


class Dev:
    """A running `asya dev`: its gateway port and the lines it has printed so far."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[str] = []

    def tail(self) -> str:
        return "".join(self.lines[-80:])


@asynccontextmanager
async def running_dev(args: list[str], env: dict[str, str], workdir: str) -> AsyncIterator[Dev]:
    """`asya dev ARGS --port P --dir WORKDIR`, until its mesh is ready.

    Its output is read for as long as it runs: an unread pipe fills up and blocks the mesh's
    supervisor, which relays every child's log lines."""
    dev = Dev(free_ports(2))
    # --verbose: every child's log lines, so a failure below shows what each process said;
    # a ready timeout under the test's own, so asya dev says what it is still waiting for.
    argv = [console_script("asya"), "dev", *args, "--port", str(dev.port), "--dir", workdir]
    argv += ["--verbose", "--ready-timeout", "45"]
    proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; stopped below)
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            dev.lines.append(line)
            if "open http://" in line:
                ready.set()
        ready.set()  # ended: the check below tells which

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        await anyio.to_thread.run_sync(ready.wait, 60)
        assert proc.poll() is None and any("open http://" in ln for ln in dev.lines), (
            f"asya dev did not get ready (code {proc.poll()}):\n{dev.tail()}"
        )
        try:
            yield dev
        except BaseException as e:
            e.add_note(f"asya dev's last lines:\n{dev.tail()}")
            raise
    finally:
        proc.terminate()
        proc.wait(20)
        reader.join(5)
        assert wait_gone(workdir) == []


async def stream_until(
    c: httpx.AsyncClient, url: str, status: str
) -> tuple[list[str], dict[str, Any]]:
    """Read a task's stream from its first event until an update says `status` (any other
    terminal status fails): the partial texts seen, and that update."""
    texts: list[str] = []
    with anyio.fail_after(60):
        async with c.stream("GET", f"{url}?last_event_id=0") as s:
            event = ""
            async for line in s.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "partial":
                    texts.append(msgspec.json.decode(line[6:])["text"])
                elif line.startswith("data: ") and event == "update":
                    data: dict[str, Any] = msgspec.json.decode(line[6:])
                    if data["status"] == status:
                        return texts, data
                    assert data["status"] not in ("succeeded", "failed", "canceled"), data
    raise AssertionError(f"the stream ended before {status}")


async def test_a_task_created_on_one_replica_streams_on_the_other(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url("postgres", str(short_tmp)) as url:
        workdir = str(short_tmp / "dev")
        args = ["--route", "tokens", "--gateways", "2", "--database-url", url]
        async with running_dev(args, subprocess_env, workdir) as dev:
            a, b = f"http://127.0.0.1:{dev.port}", f"http://127.0.0.1:{dev.port + 1}"
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as c:
                body = {"route": ["tokens"], "payload": {"prompt": "two replicas"}}
                created = await c.post(f"{b}/api/v1/mesh", json=body)
                assert created.status_code == 201, created.text
                tid = created.json()["id"]
                tokens, final = await stream_until(c, f"{a}/stream/{tid}", "succeeded")
            assert final.get("status") == "succeeded", final
            result = final["result"]
            assert isinstance(result, dict)
            assert result["text"].startswith("You asked: two replicas.")
            assert "".join(tokens) == result["text"] and len(tokens) > 10  # every token, in order


@pytest.mark.parametrize("how", ["canceled", "deadline"])
async def test_the_gateway_stops_a_running_handler(
    how: str, short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    marker = short_tmp / "finally-ran"
    args = ["--route", "hang", "--actor", "hang=examples.handlers.util:hang"]
    if how == "deadline":  # and the sidecars on the gateway's separate mesh listener
        args += ["--mesh-port", str(free_port())]
    async with (
        running_dev(args, subprocess_env, str(short_tmp / "dev")) as dev,
        httpx.AsyncClient(timeout=30) as c,
    ):
        gw = f"http://127.0.0.1:{dev.port}"
        body: dict[str, object] = {"route": ["hang"], "payload": {"marker": str(marker)}}
        if how == "deadline":
            body["timeout"] = 1.0
        tid = (await c.post(f"{gw}/api/v1/mesh", json=body)).json()["id"]
        with anyio.fail_after(20):  # until the handler runs: the task's stream says so
            async with c.stream("GET", f"{gw}/stream/{tid}?last_event_id=0") as s:
                async for line in s.aiter_lines():
                    if line.startswith("data: ") and '"processing"' in line:
                        break
        t0 = anyio.current_time()
        if how == "canceled":
            assert (await c.delete(f"{gw}/api/v1/mesh/{tid}")).status_code == 204
        with anyio.fail_after(5):
            while not marker.exists():  # noqa: ASYNC110 (the handler's process writes it)
                await anyio.sleep(0.02)
        took = anyio.current_time() - t0
        view = (await c.get(f"{gw}/api/v1/mesh/{tid}")).json()
    expected = "canceled" if how == "canceled" else "failed"
    assert view["status"] == expected, view
    # Cancel: within 1 s of the DELETE; deadline: 1 s after creation, plus at most 1 s more.
    assert took < (1.0 if how == "canceled" else 2.0), took


async def test_a_task_paused_mid_route_and_resumed_runs_the_rest(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    # Every sidecar's task feed hears `paused`; the resume must be heard too, or the next
    # actor's pre-flight (answered by its feed) would stop the resumed envelope as paused.
    args = ["--route", "asker,echo", "--actor", "asker=tests.a2a.handlers:act"]
    args += ["--actor", "echo=examples.handlers.util:echo"]
    async with (
        running_dev(args, subprocess_env, str(short_tmp / "dev")) as dev,
        httpx.AsyncClient(timeout=30) as c,
    ):
        gw = f"http://127.0.0.1:{dev.port}"
        body = {"route": ["asker", "echo"], "payload": {"pause": True, "query": "a b"}}
        tid = (await c.post(f"{gw}/api/v1/mesh", json=body)).json()["id"]
        await stream_until(c, f"{gw}/stream/{tid}", "paused")
        r = await c.post(f"{gw}/api/v1/mesh/{tid}/resume", json={"payload": {"approved": True}})
        assert r.status_code == 202, r.text
        _, final = await stream_until(c, f"{gw}/stream/{tid}", "succeeded")  # echo ran it
    result = final["result"]
    assert isinstance(result, dict)
    assert result["approved"] is True and result["query"] == "a b"
