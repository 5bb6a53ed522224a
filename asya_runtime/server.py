"""The I/O shell: an anyio Unix listener serving asya-abi/1, one task per connection.

Task tree (every task has an owner):

    serve()                      binds, writes runtime-ready, task_status.started(path);
     │                           on `stop`: unpublishes, drains (see `serve`), returns
     ├── _accept_loop()          accepts until `stop` (then cancelled)
     └── Session.run()           one per accepted stream (`session.py`): reads frames and
          │                      runs each invocation inline (holding a slot of the
          │                      concurrency limiter); closes the stream in `finally`
          └── Outbox.run_writer   writes what the socket would not take at once

One connection's I/O is `session.py`, and what it does next is decided by its state table
(`connection.py`); how bytes leave is `outbox.py`; the socket file and runtime-ready are
`socketfile.py`; one invocation is `driver.py`. This module only wires them to anyio.

Backend: asyncio (anyio's default). The flush callback and the watch on the socket while an
invocation runs are asyncio loop callbacks; everything else is anyio.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup, TaskStatus

from . import __version__
from .loader import LoadedHandler
from .session import Session, Shared
from .slots import Slots
from .socketfile import open_listener, publish_ready, unpublish
from .wire import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Hello,
)

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_SHUTDOWN_GRACE", "ServerConfig", "serve"]

log = logging.getLogger("asya_runtime")

DEFAULT_CONCURRENCY: Final = 16
# Under Kubernetes' default terminationGracePeriodSeconds (30 s), leaving time to clean up.
DEFAULT_SHUTDOWN_GRACE: Final = 25.0


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    socket_path: Path
    concurrency: int = DEFAULT_CONCURRENCY
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    socket_mode: int | None = 0o666
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE  # seconds in-flight invocations get on `stop`


class _Server:
    def __init__(self, handler: LoadedHandler, config: ServerConfig) -> None:
        self.config = config
        self.shared = Shared(
            handler=handler,
            hello=Hello(
                protocol=PROTOCOL_VERSION,
                runtime=f"asya-runtime/{__version__}",
                handler=handler.spec,
                pid=os.getpid(),
            ),
            slots=Slots(config.concurrency),
            thread_limiter=anyio.CapacityLimiter(config.concurrency),
            max_frame_bytes=config.max_frame_bytes,
        )
        self.connections: set[Session] = set()
        self.draining = False
        self.all_closed = anyio.Event()  # set once draining and no connection is left

    def drain(self) -> None:
        """Shutdown began: every connection finishes what it has received, then closes."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        self._check_all_closed()

    def closed(self, conn: Session) -> None:
        self.connections.discard(conn)
        self._check_all_closed()

    def _check_all_closed(self) -> None:
        if self.draining and not self.connections:
            self.all_closed.set()


async def _serve_connection(server: _Server, stream: SocketStream) -> None:
    """One connection; a bug in it closes that connection, never the whole server."""
    conn = Session(stream, server.shared)
    server.connections.add(conn)
    try:
        if server.draining:
            conn.machine.drain()  # accepted in the instant before the listener closed
        await conn.run()
    except Exception:
        log.exception("connection failed; closed")
    finally:
        server.closed(conn)


async def _accept_loop(listener: SocketListener, server: _Server, conns: TaskGroup) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                log.error("accept failed (%s); backing off", exc)
                await anyio.sleep(0.1)
                continue
            raise
        conns.start_soon(_serve_connection, server, stream)


async def serve(
    handler: LoadedHandler,
    config: ServerConfig,
    *,
    stop: anyio.Event | None = None,
    task_status: TaskStatus[Path] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Bind, write runtime-ready, serve until `stop` is set (or until cancelled).

    On `stop` (graceful): stop accepting, remove the socket and runtime-ready at once (a
    sidecar now sees the runtime as not ready), close idle connections, let invocations
    already received finish (each connection closes after its last `end`), and after
    `config.shutdown_grace` seconds cancel what still runs (handlers' `finally` blocks run,
    each gets its `end`). Cancelling `serve` cancels everything at once. Both files are
    removed on every way out.
    """
    path = config.socket_path
    listener = await open_listener(path, config.socket_mode)
    server = _Server(handler, config)
    published = True
    try:
        publish_ready(path)
        log.info(
            "serving %s (%s) on %s, concurrency %d",
            handler.spec,
            handler.kind.value,
            path,
            config.concurrency,
        )
        async with anyio.create_task_group() as conns:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(_accept_loop, listener, server, conns)
                task_status.started(path)
                await (anyio.sleep_forever() if stop is None else stop.wait())
                accepting.cancel_scope.cancel()
            # At once, and only here: a runtime started during the grace may bind this path.
            unpublish(path)
            published = False
            await listener.aclose()
            busy = sum(1 for c in server.connections if c.machine.busy)
            log.info(
                "shutting down: %d invocation(s) in flight, up to %gs to finish",
                busy,
                config.shutdown_grace,
            )
            server.drain()
            with anyio.move_on_after(config.shutdown_grace):
                await server.all_closed.wait()
            if server.connections:
                log.warning(
                    "shutdown grace (%gs) over: cancelling %d invocation(s)",
                    config.shutdown_grace,
                    sum(1 for c in server.connections if c.running),
                )
            conns.cancel_scope.cancel()
    finally:
        if published:
            unpublish(path)
        with anyio.CancelScope(shield=True):
            await listener.aclose()
