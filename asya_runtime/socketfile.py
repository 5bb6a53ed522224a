"""The socket file and `runtime-ready` beside it: bind, publish, unpublish. No frames here.

The bind is done on the calling thread, not in a worker thread as `anyio.create_unix_listener`
does: a Unix bind is one local syscall, and a worker thread started for it outlives the
server by a moment (anyio stops idle workers only when the root task ends), which made the
CLI report "exiting past 1 worker thread(s)" for a handler that never ran (issue 14).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from anyio.abc import SocketListener

from .wire import READY_FILE

__all__ = ["open_listener", "prepare_socket_path", "publish_ready", "unpublish"]

_BACKLOG = 4096


def prepare_socket_path(path: Path) -> None:
    """Create the directory; remove a stale socket; refuse a live one or a non-socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use by another live process")


async def open_listener(path: Path, mode: int | None) -> SocketListener:
    """Bind and listen on `path` (mode `mode`, None = leave as is)."""
    prepare_socket_path(path)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        raw.setblocking(False)
        raw.bind(str(path))
        if mode is not None:
            os.chmod(path, mode)
        raw.listen(_BACKLOG)
        return await SocketListener.from_socket(raw)
    except BaseException:
        raw.close()
        raise


def publish_ready(path: Path) -> Path:
    """Write `runtime-ready` next to the socket; returns its path."""
    ready = path.parent / READY_FILE
    ready.write_text("ready")
    return ready


def unpublish(path: Path) -> None:
    """Remove the socket file and `runtime-ready` (a sidecar then sees "not ready")."""
    for p in (path, path.parent / READY_FILE):
        p.unlink(missing_ok=True)
