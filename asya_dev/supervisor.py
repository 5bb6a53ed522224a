"""Child-process supervision for `asya dev`: start, pump logs, notice crashes, stop everything.

No orphans, whatever happens: each child gets its own process group (so a signal reaches all of
it), asks the kernel for SIGTERM when `asya dev` dies (PR_SET_PDEATHSIG, so even a SIGKILL of
the parent stops it), and `stop_all` terminates then kills every group. Knows processes and
lines of text, nothing about the mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import anyio
from anyio.abc import TaskGroup

_PR_SET_PDEATHSIG: Final = 1
_COLOURS: Final = (36, 33, 35, 32, 34, 91, 96, 93, 95, 92)
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_LINES: Final = 40


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: SIGTERM this child when the parent dies (Linux), even by SIGKILL."""

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # not Linux: the process group and stop_all still apply
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class ChildSpec:
    """One process to run: a display name, its argv and its full environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str | None = None


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process
    colour: int
    # The last lines of output, always kept (bounded; older lines are dropped) so a crash
    # can be explained even when logs are not shown.
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def pid(self) -> int:
        return self.proc.pid


class ChildCrashed(RuntimeError):
    """A supervised child exited while it was meant to be running."""

    def __init__(self, child: Child, code: int) -> None:
        super().__init__(f"{child.spec.name} exited with code {code}")
        self.child = child
        self.code = code


class Supervisor:
    """Starts children into a task group it does not own; `stop_all` before leaving it."""

    def __init__(self, out: TextIO, *, verbose: bool = False, colour: bool | None = None) -> None:
        self.out = out
        self.verbose = verbose
        self.colour = out.isatty() if colour is None else colour
        self.children: list[Child] = []
        self.stopping = False
        self.crashed = anyio.Event()  # set when the first child exits unexpectedly
        self.crash: ChildCrashed | None = None

    async def start(self, tg: TaskGroup, spec: ChildSpec) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=dict(spec.env),
            cwd=spec.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches all of it
            preexec_fn=_die_with_parent(os.getpid()),
        )
        child = Child(spec, proc, _COLOURS[len(self.children) % len(_COLOURS)])
        self.children.append(child)
        tg.start_soon(self._pump, child)
        return child

    def _prefix(self, child: Child) -> str:
        width = max(len(c.spec.name) for c in self.children)
        name = child.spec.name.ljust(width)
        return f"\x1b[{child.colour}m{name} |\x1b[0m " if self.colour else f"{name} | "

    async def _pump(self, child: Child) -> None:
        """Read the child's output line by line until EOF, then notice how it ended."""
        assert child.proc.stdout is not None
        while line := await child.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if not self.colour:
                text = _ANSI.sub("", text)  # children log in colour; not into a file or pipe
            child.tail.append(text)
            if self.verbose:
                self.out.write(self._prefix(child) + text + "\n")
                self.out.flush()
        code = await child.proc.wait()
        if not self.stopping and self.crash is None:
            self.crash = ChildCrashed(child, code)
            self.crashed.set()

    def report_crash(self, crash: ChildCrashed) -> None:
        """Print a crashed child's last lines (always, verbose or not)."""
        self.out.write(f"\n{crash}; its last lines:\n")
        for text in crash.child.tail:
            self.out.write(self._prefix(crash.child) + text + "\n")
        self.out.flush()

    async def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every child's group, wait up to `grace`, then SIGKILL what is left; says
        what it waits for when a child takes longer than a moment."""
        self.stopping = True
        for child in reversed(self.children):  # sidecars before runtimes before the gateway
            _signal_group(child, signal.SIGTERM)
        patience = min(1.0, grace)
        with anyio.move_on_after(patience):
            for child in self.children:
                await child.proc.wait()
        if left := self._running():
            names = ", ".join(c.spec.name for c in left)
            self._say(f"stopping: waiting for {names} to exit (SIGKILL in {grace - patience:g}s)")
            with anyio.move_on_after(grace - patience):
                for child in left:
                    await child.proc.wait()
        if left := self._running():
            names = ", ".join(c.spec.name for c in left)
            self._say(f"stopping: {names} still running after {grace:g}s: killed")
            for child in left:
                _signal_group(child, signal.SIGKILL)
            with anyio.move_on_after(grace):
                for child in left:
                    await child.proc.wait()

    def _running(self) -> list[Child]:
        return [c for c in self.children if c.proc.returncode is None]

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def kill_all_now(self) -> None:
        """Last resort (synchronous, e.g. from `finally` after the loop is gone): SIGKILL all."""
        for child in self.children:
            if child.proc.returncode is None:
                _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)  # pgid == pid: the child leads its own group


def python_script(name: str) -> str:
    """Path of one of our console scripts next to the running interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


__all__ = ["Child", "ChildCrashed", "ChildSpec", "Supervisor", "python_script"]
