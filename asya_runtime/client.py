"""A tiny blocking client of asya-abi/1: connect, send one `invoke`, yield frames as they arrive.

Used by `asya-runtime invoke` and by tests; plain `socket`, no event loop. It reuses the
sans-IO codec, exactly as the sidecar does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgspec

from .codec import NEED_DATA, FrameWriter, sidecar_reader
from .wire import (
    DEFAULT_MAX_FRAME_BYTES,
    End,
    Envelope,
    Invoke,
    RuntimeFrame,
    invoke_frame,
)

__all__ = ["envelope_for", "invoke_once", "raw_invoke"]


def envelope_for(payload: Any, route: list[str] | None = None, **meta: Any) -> Envelope:
    """An envelope for `payload` whose route is `route` (first = current actor)."""
    actors = route or [""]
    return msgspec.convert(
        {"route": {"prev": [], "curr": actors[0], "next": actors[1:]}, "payload": payload, **meta},
        Envelope,
    )


def raw_invoke(envelope: dict[str, Any]) -> Invoke:
    """An `invoke` carrying any map as its envelope, valid or not (for tests and --envelope)."""
    return Invoke(envelope=msgspec.Raw(msgspec.msgpack.encode(envelope)))


def invoke_once(
    socket_path: str,
    invoke: Invoke | Envelope,
    *,
    timeout: float | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> Iterator[RuntimeFrame]:
    """Yield every frame (hello included) until the invocation's `end`, then close."""
    frame = invoke if isinstance(invoke, Invoke) else invoke_frame(invoke)
    reader = sidecar_reader(max_frame_bytes)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(FrameWriter(max_frame_bytes).encode(frame))
        while True:
            f = reader.next_frame()
            if f is NEED_DATA:
                reader.feed(sock.recv(65536))
                continue
            if f is None:
                return
            yield f  # type: ignore[misc]
            if isinstance(f, End):
                return
