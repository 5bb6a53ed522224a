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


class Bell:
    """The receiving side for one queue in one process, shared by all its waiting tasks.

    One task at a time watches the socket; the others wait for it to report. `generation`
    counts the rings seen, so a task that read it before checking the queue never misses a ring
    that came after its check (the lost-wakeup race).
    """

    def __init__(self, directory: Path, queue: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_queue_tag(queue)}.{os.getpid()}.{next(_counter)}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._sock.bind(str(self.path))
        self.generation = 0
        self._watching = anyio.Lock()
        self._changed = anyio.Event()

    async def wait(self, seen: int, at_most: float) -> None:
        """Return once a ring newer than generation `seen` arrived, or after `at_most` seconds."""
        with anyio.move_on_after(at_most):
            while self.generation == seen:
                if self._watching.locked():
                    await self._changed.wait()  # the watcher saw a ring or gave up: look again
                    continue
                async with self._watching:
                    try:
                        await anyio.wait_readable(self._sock)
                        self._drain()
                        self.generation += 1
                    finally:
                        changed, self._changed = self._changed, anyio.Event()
                        changed.set()

    def _drain(self) -> None:
        # Rings carry no data: many rings between two looks count as one.
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, OSError):
                return

    def close(self) -> None:
        anyio.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
