"""Real processes for the fault suite: runtimes, sidecars and gateways, all owned by a `Mesh`.

A `Mesh` kills (SIGKILL) and reaps every process it started when the test ends, whatever
happened; each process writes its output to a log file the test can read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec

from asya_mesh.transports import TransportConfig, open_transport, queue_name
from asya_runtime.wire import Envelope, Route

from ..conftest import console_script

__all__ = ["Mesh", "Proc", "QueueClient", "free_port", "make_envelope", "wait_for"]


async def wait_for(cond: Any, limit: float, what: str, step: float = 0.05) -> Any:
    """Poll `cond()` until it returns something truthy (state with no event to wait on)."""
    deadline = time.monotonic() + limit
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {limit}s: {what}")
        await anyio.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """One child process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9, then reap."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def signal(self, signum: int) -> None:
        if self.alive:
            self.popen.send_signal(signum)

    async def wait_exit(self, limit: float) -> int:
        await wait_for(lambda: not self.alive, limit, f"{self.name} to exit")
        rc = self.popen.returncode
        assert rc is not None
        return rc

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_kib(self) -> int:
        """Resident memory (VmRSS) in KiB, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.name}")


@dataclass
class Mesh:
    """Starts processes in `root` with `env`; `close()` kills all of them."""

    root: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    _n: int = 0

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Proc:
        self._n += 1
        log = self.root / f"{self._n:03d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    async def runtime(
        self,
        spec: str,
        sock_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        ready: bool = True,
        name: str = "runtime",
    ) -> Proc:
        os.makedirs(sock_dir, exist_ok=True)
        argv = [console_script("asya-runtime"), "run", spec, "--socket", str(sock_dir / "rt.sock")]
        proc = self.start(name, argv, env)
        if ready:
            await wait_for(
                lambda: (sock_dir / "runtime-ready").exists() or not proc.alive,
                30,
                f"{name} ready",
            )
            assert proc.alive, f"{name} exited:\n{proc.output()}"
        return proc

    def sidecar(
        self,
        actor: str,
        sock_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "sidecar",
    ) -> Proc:
        base = {
            "ASYA_ACTOR_NAME": actor,
            "ASYA_SOCKET_DIR": str(sock_dir),
            "ASYA_SOCKET_NAME": "rt.sock",
            "ASYA_METRICS_ADDR": "",
            "ASYA_LOG_FORMAT": "json",
        }
        return self.start(name, [console_script("asya-sidecar"), "run"], {**base, **(env or {})})

    def end_sidecar(self, actor: str, env: Mapping[str, str] | None = None) -> Proc:
        return self.sidecar(
            actor, self.root, {"ASYA_IS_END_ACTOR": "true", **(env or {})}, name=f"end-{actor}"
        )

    async def gateway(self, env: Mapping[str, str] | None = None) -> tuple[Proc, str]:
        import httpx

        port = free_port()
        proc = self.start(
            "gateway", [console_script("asya-gateway"), "run", "--port", str(port)], env
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not proc.alive:
                raise RuntimeError(f"gateway exited:\n{proc.output()}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, 30, "gateway /health")
        return proc, url

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
                proc.kill()


def make_envelope(actor: str, payload: Any, *, next_: Iterable[str] = (), **meta: Any) -> bytes:
    env = Envelope(route=Route(prev=[], curr=actor, next=list(next_)), payload=payload, **meta)
    return msgspec.json.encode(env)


class QueueClient:
    """The test's own view of the queues (same transport layer as the sidecar)."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self._t: Any = None

    async def __aenter__(self) -> QueueClient:
        self._t = await open_transport(self.config, concurrency=64)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._t.aclose()

    def q(self, actor: str) -> str:
        return queue_name(self.config.namespace, actor)

    async def declare(self, *actors: str) -> None:
        """The test plays these actors' sidecars: declare their queues, as a sidecar does at
        start (a create whose first actor has no queue is refused)."""
        for actor in actors:
            await self._t.declare(self.q(actor))

    async def wait_exists(self, *actors: str) -> None:
        """Until these actors' sidecars have declared their queues (routing to an actor whose
        queue does not exist yet sends the envelope to x-sump, by design). Callers bound it."""
        for actor in actors:
            # A queue's creation has no event to wait on from another process: poll.
            while not await self._t.exists(self.q(actor)):  # noqa: ASYNC110
                await anyio.sleep(0.05)

    async def send(self, actor: str, bodies: Iterable[bytes]) -> None:
        await self._t.send_many([(self.q(actor), b) for b in bodies])

    async def drain(self, actor: str, *, wait: float = 0.2, limit: int = 1_000_000) -> list[bytes]:
        """Receive and ack whatever arrives until `wait` seconds pass with nothing."""
        out: list[bytes] = []
        while len(out) < limit:
            d = await self._t.receive(self.q(actor), wait=wait)
            if d is None:
                break
            out.append(d.body)
            await d.ack()
        return out

    async def depths(self) -> dict[str, int]:
        depths: dict[str, int] = await self._t.depths()
        return depths
