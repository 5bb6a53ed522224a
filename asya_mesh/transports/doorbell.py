"""Doorbells: wake idle receivers of a shared SQLite queue file in other processes at once.

A receiver binds one Unix datagram socket per queue in a directory next to the database; a
sender, after committing, sends one byte to every socket registered for that queue. Knows
nothing about SQL: the store decides when to ring and what to re-check after waking.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import socket
from pathlib import Path
from typing import Final

import anyio

#: Unix socket paths must stay below ~108 bytes; leave room for the socket file name.
_MAX_DIR_CHARS: Final = 80
_counter = itertools.count()


def bell_directory(db_path: str) -> Path:
    """Where the doorbells of `db_path` live; the same answer in every process.

    `<db>.bells/` next to the database when the path is short enough for socket names, else a
    directory in /tmp named after the database's real path.
    """
    real = os.path.realpath(db_path)
    beside = Path(real + ".bells")
    if len(str(beside)) <= _MAX_DIR_CHARS:
        return beside
    digest = hashlib.blake2b(real.encode(), digest_size=8).hexdigest()
    return Path("/tmp") / f"asya-bells-{digest}"


def _queue_tag(queue: str) -> str:
    # Queue names may hold any character; a short digest keeps socket names short and safe.
    return hashlib.blake2b(queue.encode(), digest_size=6).hexdigest()


class Ringer:
    """The sending side: ring every bell registered for a queue. Blocking but never waits."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def ring(self, queue: str) -> None:
        prefix = _queue_tag(queue) + "."
        try:
            names = os.listdir(self._dir)  # ~10 µs for a few dozen entries; no cache to go stale
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith(prefix):
                continue
            path = str(self._dir / name)
            try:
                self._sock.sendto(b"\x01", path)
            except BlockingIOError:
                pass  # its buffer is full of unread rings: it is already awake
            except ConnectionRefusedError:
                # Nobody bound: the owner died (SIGKILL) without cleaning up.
                with contextlib.suppress(OSError):
                    os.unlink(path)
            except OSError:
                pass  # vanished meanwhile, or not a socket: nothing to wake

    def close(self) -> None:
        self._sock.close()


class _Waiter:
    __slots__ = ("event", "reason")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reason = ""  # "ring": look at the queue; "watch": take over watching the socket


class Bell:
    """The receiving side for one queue in one process, shared by all its waiting tasks.

    Wake-one, not wake-all: one waiting task watches the socket and returns itself when rung;
    a receiver that then leases a message calls `pass_on()`, waking one more waiter, so a
    burst is picked up by as many receivers as it needs and an idle herd stays asleep. A
    `pass_on()` with nobody waiting is kept (one, not counted) for the next `wait`, so a
    receiver between its look at the queue and its wait never misses it.
    """

    def __init__(self, directory: Path, queue: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # pid + counter are unique on one host; the random part keeps them unique when
        # containers with their own pid namespaces share the directory through a volume.
        unique = f"{os.getpid()}.{next(_counter)}.{secrets.token_hex(3)}"
        self.path = directory / f"{_queue_tag(queue)}.{unique}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._sock.bind(str(self.path))
        self._waiters: list[_Waiter] = []  # FIFO; bounded by the caller's concurrent receives
        self._watcher: _Waiter | None = None
        self._pending = False

    async def wait(self, at_most: float) -> None:
        """Return when rung or passed on to, or after `at_most` seconds (then look anyway)."""
        if self._pending:
            self._pending = False
            return
        me = _Waiter()
        self._waiters.append(me)
        try:
            with anyio.move_on_after(at_most):
                while True:
                    if self._watcher is None:
                        self._watcher = me
                        try:
                            await anyio.wait_readable(self._sock)
                            self._drain()
                            return
                        finally:
                            self._watcher = None
                            self._hand_over(me)
                    await me.event.wait()
                    if me.reason == "ring":
                        return
                    me.event = anyio.Event()  # handed the watch: loop and take it
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(me)

    def _hand_over(self, leaving: _Waiter) -> None:
        for w in self._waiters:
            if w is not leaving and not w.event.is_set():
                w.reason = "watch"
                w.event.set()
                return

    def pass_on(self) -> None:
        """Wake one more waiter to look at the queue (called after a successful lease)."""
        for w in self._waiters:
            if w is not self._watcher and not w.event.is_set():
                w.reason = "ring"
                w.event.set()
                return
        if self._watcher is None:
            self._pending = True
        else:
            # Only the watcher waits: ring our own socket so that it looks.
            with contextlib.suppress(OSError):
                self._sock.sendto(b"\x01", str(self.path))

    def _drain(self) -> None:
        # Rings carry no data: many rings between two looks count as one.
        while True:
            try:
                self._sock.recv(64)
            except OSError:  # BlockingIOError included: nothing more to read
                return

    def close(self) -> None:
        anyio.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


__all__ = [
    "Bell",
    "Ringer",
    "bell_directory",
]
