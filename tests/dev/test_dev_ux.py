"""`asya dev` as a user sees it: a timeout's error on its own line, a shutdown that says what
it waits for, Ctrl-C under `make dev` without `Error 130`. Real processes, a real pty."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import console_script
from .test_mesh_e2e import processes_mentioning, wait_gone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_timeout_error_has_its_own_line_and_shutdown_says_what_it_waits_for(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    workdir = str(short_tmp / "dev")
    argv = [
        console_script("asya"),
        "dev",
        "--route",
        "slow",
        "--actor",
        "slow=tests.dev.handlers:talk_then_hang",
        "--prompt",
        "hi",
        "--timeout",
        "5",
        "--port",
        str(free_port()),
        "--dir",
        workdir,
    ]
    try:
        r = subprocess.run(
            argv, env=subprocess_env, cwd=REPO, capture_output=True, text=True, timeout=90
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert "thinking\nasya dev: no result after 5s (--timeout)\n" in r.stdout, r.stdout
        # The runtime still runs the handler: shutdown names it instead of going quiet.
        assert "stopping: waiting for " in r.stdout and "slow/" in r.stdout, r.stdout
        assert wait_gone(workdir) == []
    finally:
        for pid in processes_mentioning(workdir):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_under_make_dev_ends_without_error_130(
    short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    """Ctrl-C on a terminal signals make and `asya dev` alike; `asya dev` exits 0, so make
    reports no `Error 130`."""
    workdir = str(short_tmp / "dev")
    venv = Path(console_script("asya")).parent.parent
    stamp = subprocess.run(
        ["cksum", "pyproject.toml"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    (venv / f".installed-{stamp}").touch()  # make's install stamp: this venv is installed
    env = {**subprocess_env, "ASYA_DEV_PORT": str(free_port()), "ASYA_DEV_DIR": workdir}
    pid, fd = pty.fork()
    if pid == 0:  # the child: make, on the pty, as a user at a terminal
        os.chdir(REPO)
        os.execvpe("make", ["make", "dev", f"VENV={venv}"], env)
    out = b""
    sent = False
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the pty closed: make is gone
                    break
                if not chunk:
                    break
                out += chunk
            if b"Ctrl-C stops the mesh" in out and not sent:
                os.write(fd, b"\x03")  # the terminal's Ctrl-C: SIGINT to the foreground group
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        for p in processes_mentioning(workdir):
            os.kill(p, signal.SIGKILL)
    text = out.decode(errors="replace")
    assert sent, text
    assert "Error 130" not in text and "Error" not in text.split("Ctrl-C stops the mesh")[1], text
    assert "stopping the mesh (Ctrl-C)" in text
    assert os.waitstatus_to_exitcode(status) in (0, -signal.SIGINT)  # make re-raises SIGINT
    assert wait_gone(workdir) == []
