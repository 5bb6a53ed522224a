"""A RabbitMQ of a test's own (services.sh, other ports, node name and state directory), for
tests that stop, kill or restart the broker: never the shared one other tests are using."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import anyio

SERVICES_SH = "/work/shared/tools/services.sh"
_SBIN = "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_run_own_rabbit() -> bool:
    return Path(SERVICES_SH).exists() and shutil.which("rabbitmq-server", path=_SBIN) is not None


class OwnRabbit:
    """A RabbitMQ on its own ports, node name and state directory (services.sh)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="rbo-", dir="/tmp")
        port = free_port()
        self.env = {
            **os.environ,
            "SERVICES_DIR": self.dir,
            "SERVICES_RABBITMQ_PORT": str(port),
            "SERVICES_RABBITMQ_DIST_PORT": str(free_port()),
            "SERVICES_RABBITMQ_NODENAME": f"rbo{port}@localhost",
            "SERVICES_NO_INSTALL": "1",
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            ["bash", SERVICES_SH, *args, "rabbitmq"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"services.sh {' '.join(args)}: {done.stderr[-2000:]}"

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._run, "start")

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self._run, "stop")

    def pid(self) -> int:
        return int(Path(self.dir, "rabbitmq", "rabbitmq.pid").read_text().split()[0])

    async def kill9(self) -> None:
        pid = self.pid()
        os.kill(pid, 9)
        with anyio.fail_after(30):
            # Not our child (no waitpid): poll /proc until the node is really gone.
            while _alive(pid):  # noqa: ASYNC110
                await anyio.sleep(0.05)

    def clean(self) -> None:
        with contextlib.suppress(Exception):
            self._run("clean")
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


__all__ = ["SERVICES_SH", "OwnRabbit", "can_run_own_rabbit"]
