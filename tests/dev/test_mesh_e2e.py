"""End to end: `asya dev` starts real processes (gateway, runtimes, sidecars, x-sink, x-sump)
on the embedded SQLite queue; clients watch tokens stream in over real HTTP."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from ..conftest import console_script
from ..gateway.helpers import SseEvent, read_sse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_mentioning(marker: str) -> list[int]:
    """Pids whose command line or environment mentions `marker` (our children all do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if marker.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


def wait_gone(marker: str, limit: float = 15.0) -> list[int]:
    deadline = time.monotonic() + limit
    while (left := processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def mesh(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str], str]]:
    """`asya dev --route tokens,bad`, no prompt: (gateway url, the process, its marker dir)."""
    port = free_port()
    workdir = str(short_tmp / "dev")
    proc = subprocess.Popen(
        [
            console_script("asya"),
            "dev",
            "--route",
            "tokens,bad",
            "--actor",
            "bad=examples.handlers.failing:explode",
            "--port",
            str(port),
            "--dir",
            workdir,
        ],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "open http://" in line:
                break
        else:
            pytest.fail(f"asya dev ended before the mesh was ready (code {proc.wait()})")
        yield f"http://127.0.0.1:{port}", proc, workdir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in processes_mentioning(workdir):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_tokens_stream_incrementally_through_the_whole_mesh(
    mesh: tuple[str, subprocess.Popen[str], str],
) -> None:
    url, proc, workdir = mesh
    events: list[SseEvent] = []
    delay = 0.08
    with anyio.fail_after(60):
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(
                f"{url}/api/v1/mesh",
                json={"route": ["tokens"], "payload": {"prompt": "why", "token_delay": delay}},
            )
            assert r.status_code == 201
            tid = r.json()["id"]
            async with c.stream("GET", f"{url}/stream/{tid}") as resp:
                await read_sse(resp, events)
    tokens = [e for e in events if e.event == "partial"]
    final = events[-1]
    assert final.terminal and final.data["status"] == "succeeded"
    text = "".join(e.data["text"] for e in tokens)
    assert final.data["result"]["text"] == text and text.startswith("You asked: why.")
    assert len(tokens) > 20
    # Incremental: arrivals spread over the handler's delays, not one burst at the end.
    spread = tokens[-1].at - tokens[0].at
    assert spread > 0.5 * delay * (len(tokens) - 1), spread
    assert final.at - tokens[len(tokens) // 2].at > 0.25 * delay * len(tokens)
    # Many separate arrivals (a busy machine may batch a few tokens into one POST).
    bursts = 1 + sum(b.at - a.at > delay / 4 for a, b in itertools.pairwise(tokens))
    assert bursts >= len(tokens) // 3, bursts
    # Ctrl-C stops every process of the mesh.
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0  # a user's Ctrl-C is not a failure
    assert wait_gone(workdir) == []


@pytest.mark.anyio
async def test_handler_error_ends_the_stream_with_one_failed_update(
    mesh: tuple[str, subprocess.Popen[str], str],
) -> None:
    url = mesh[0]
    with anyio.fail_after(60):
        async with httpx.AsyncClient(timeout=30) as c:
            events: list[SseEvent] = []
            async with c.stream(
                "POST",
                f"{url}/api/v1/mesh",
                json={"route": ["bad"], "payload": {"x": 1}},
                headers={"Accept": "text/event-stream"},
            ) as resp:
                await read_sse(resp, events)
            tid = events[0].data["id"]
            state = (await c.get(f"{url}/api/v1/mesh/{tid}")).json()
    terminals = [e for e in events if e.terminal]
    assert len(terminals) == 1 and events[-1] is terminals[0]
    assert terminals[0].data["status"] == "failed" and terminals[0].data["error"]
    assert state["status"] == "failed"


def test_asya_dev_prompt_streams_and_exits_zero(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    workdir = str(short_tmp / "dev")
    proc = subprocess.run(
        [
            console_script("asya"),
            "dev",
            "--prompt",
            "what is an actor?",
            "--port",
            str(free_port()),
            "--dir",
            workdir,
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    try:
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "You asked: what is an actor? Actors stream tokens" in out
        assert "» download: Downloading data..." in out  # a stage FLY as a status line
        assert "100.0%" in out  # the progress bar reached its end
        assert "✔ succeeded" in out and '"results": [' in out
        assert out.index("Actors stream") < out.index("✔ succeeded")
    finally:
        assert wait_gone(workdir) == []


def test_killing_asya_dev_leaves_no_child_alive(
    mesh: tuple[str, subprocess.Popen[str], str],
) -> None:
    url, proc, workdir = mesh
    assert len(processes_mentioning(workdir)) >= 7  # gateway, 2 runtimes, 4 sidecars, itself
    proc.kill()  # SIGKILL: no chance to clean up; PR_SET_PDEATHSIG must do it
    proc.wait(10)
    assert wait_gone(workdir) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_a_crashing_child_stops_the_mesh_and_shows_its_last_lines(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    workdir = str(short_tmp / "dev")
    proc = subprocess.run(
        [
            console_script("asya"),
            "dev",
            "--route",
            "bad",
            "--actor",
            "bad=examples.handlers.nope:missing",
            "--port",
            str(free_port()),
            "--dir",
            workdir,
            "--prompt",
            "x",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    try:
        assert proc.returncode == 2, proc.stdout
        assert "bad/runtime exited with code" in proc.stdout
        assert "examples.handlers.nope" in proc.stdout  # the runtime's own error line
    finally:
        assert wait_gone(workdir) == []


@pytest.mark.anyio
async def test_the_quickstart_stream_with_last_event_id_0_misses_no_token(
    mesh: tuple[str, subprocess.Popen[str], str],
) -> None:
    """docs/quickstart.md: `curl -N /stream/<id>?last_event_id=0`, connecting after the task
    ran, still shows every token; without it, only the snapshot and what follows."""
    url = mesh[0]
    with anyio.fail_after(60):
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(
                f"{url}/api/v1/mesh",
                json={"route": ["tokens"], "payload": {"prompt": "late", "token_delay": 0}},
            )
            tid = r.json()["id"]
            late: list[SseEvent] = []
            async with c.stream("GET", f"{url}/stream/{tid}?last_event_id=0") as resp:
                await read_sse(resp, late)
            plain: list[SseEvent] = []
            async with c.stream("GET", f"{url}/stream/{tid}") as resp:
                await read_sse(resp, plain)
    final = late[-1]
    assert final.terminal and final.data["status"] == "succeeded"
    text = "".join(e.data["text"] for e in late if e.event == "partial")
    assert text == final.data["result"]["text"] and text.startswith("You asked: late.")
    assert not [e for e in plain if e.event == "partial"]  # what the old docs showed
