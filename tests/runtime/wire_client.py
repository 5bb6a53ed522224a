"""A blocking test client speaking asya-abi/1, and a fixture-friendly runtime process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from asya_runtime.codec import NEED_DATA, FrameWriter, sidecar_reader
from asya_runtime.wire import (
    Cancel,
    End,
    Envelope,
    Frame,
    Hello,
    Invoke,
    RuntimeFrame,
    invoke_frame,
)


def envelope(payload: Any, route: list[str] | None = None, **meta: Any) -> Envelope:
    actors = route or ["actor"]
    return msgspec.convert(
        {"route": {"prev": [], "curr": actors[0], "next": actors[1:]}, "payload": payload, **meta},
        Envelope,
    )


class WireClient:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.reader = sidecar_reader()
        self.writer = FrameWriter()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, frame: Frame) -> None:
        self.sock.sendall(self.writer.encode(frame))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> RuntimeFrame | None:
        """Next frame, or None when the runtime closed the connection."""
        while True:
            f = self.reader.next_frame()
            if f is not NEED_DATA:
                return f  # type: ignore[return-value]
            self.reader.feed(self.sock.recv(65536))

    def hello(self) -> Hello:
        f = self.recv()
        assert isinstance(f, Hello), f
        return f

    def invoke(self, env: Envelope | Invoke) -> None:
        self.send(env if isinstance(env, Invoke) else invoke_frame(env))

    def until_end(self) -> list[RuntimeFrame]:
        out: list[RuntimeFrame] = []
        while True:
            f = self.recv()
            assert f is not None, f"connection closed before end; got {out}"
            out.append(f)
            if isinstance(f, End):
                return out

    def call(self, env: Envelope | Invoke) -> list[RuntimeFrame]:
        self.invoke(env)
        return self.until_end()

    def cancel(self) -> None:
        self.send(Cancel())


class RuntimeProcess:
    def __init__(self, spec: str | None, sock: Path, env: dict[str, str], *args: str) -> None:
        self.socket = sock
        cmd = [sys.executable, "-m", "asya_runtime", "run"]
        if spec is not None:
            cmd.append(spec)
        cmd += ["--socket", str(sock), *args]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 15.0) -> RuntimeProcess:
        ready = self.socket.parent / "runtime-ready"
        deadline = time.monotonic() + timeout
        while not (ready.exists() and self.socket.exists()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"runtime exited {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise TimeoutError("runtime not ready")
            time.sleep(0.02)
        return self

    def client(self, timeout: float = 10.0) -> WireClient:
        return WireClient(self.socket, timeout)

    def stop(self) -> int:
        # SIGTERM drains (up to the shutdown grace); a second SIGTERM cancels what still runs.
        for _ in range(2):
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.proc.returncode
