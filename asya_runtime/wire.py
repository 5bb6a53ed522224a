"""Wire types of asya-abi/1: the envelope and every frame, shared by runtime and sidecar.

This module owns the shapes only. It knows nothing about sockets, handlers or queues; the
byte-level framing lives in `codec.py`. Decoders ignore unknown keys (forward compatibility),
so no Struct here sets `forbid_unknown_fields`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Written next to the socket once the runtime listens; the sidecar waits for it (abi-wire.md).
READY_FILE: Final = "runtime-ready"


class Route(msgspec.Struct, kw_only=True):
    """Where an envelope has been, is, and goes next."""

    prev: list[str]
    curr: str
    next: list[str]

    def shifted(self, next_: list[str]) -> Route:
        """The route one hop later, with `next_` as the current `.route.next`."""
        return Route(
            prev=[*self.prev, self.curr],
            curr=next_[0] if next_ else "",
            next=list(next_[1:]),
        )


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The upstream Asya envelope (queue JSON and `invoke` payload alike)."""

    id: str | None = None
    parent_id: str | None = None
    route: Route
    headers: dict[str, Any] = {}
    status: dict[str, Any] = {}
    payload: Any


class Frame(msgspec.Struct, tag_field="t", tag=str.lower, kw_only=True):
    """Base of every frame; the lower-cased class name is the `t` tag."""


# -- sidecar -> runtime ---------------------------------------------------------------------


class Invoke(Frame):
    """Run the handler once. The envelope stays raw so a bad one is an error, not a bad frame."""

    envelope: msgspec.Raw


class Cancel(Frame):
    """Stop the invocation in progress on this connection."""


# -- runtime -> sidecar ---------------------------------------------------------------------


class Hello(Frame):
    protocol: int
    runtime: str
    handler: str
    pid: int


class Fly(Frame):
    data: dict[str, Any]


class Emit(Frame, omit_defaults=True):
    payload: Any
    route: Route
    headers: dict[str, Any] = {}
    status: dict[str, Any] = {}


class Error(Frame):
    code: str
    message: str
    type: str = ""
    mro: list[str] = []
    traceback: str = ""


class End(Frame):
    pass


SidecarFrame = Invoke | Cancel
RuntimeFrame = Hello | Fly | Emit | Error | End

# Error codes (the spec's vocabulary; `errors.error_code` is the one place that picks them).
MSG_PARSING_ERROR: Final = "msg_parsing_error"
PROCESSING_ERROR: Final = "processing_error"


def invoke_frame(envelope: Envelope, encoder: msgspec.msgpack.Encoder | None = None) -> Invoke:
    """Build an `invoke` frame for `envelope` (the sidecar side of `Invoke.envelope: Raw`)."""
    enc = encoder or msgspec.msgpack.Encoder()
    return Invoke(envelope=msgspec.Raw(enc.encode(envelope)))


_envelope_decoder: Final = msgspec.msgpack.Decoder(Envelope)


def decode_envelope(raw: msgspec.Raw | bytes) -> Envelope:
    """Decode the envelope of an `invoke`; raises `msgspec.ValidationError` naming the field."""
    return _envelope_decoder.decode(raw)


__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MSG_PARSING_ERROR",
    "PROCESSING_ERROR",
    "PROTOCOL_VERSION",
    "READY_FILE",
    "Cancel",
    "Emit",
    "End",
    "Envelope",
    "Error",
    "Fly",
    "Frame",
    "Hello",
    "Invoke",
    "Route",
    "RuntimeFrame",
    "SidecarFrame",
    "decode_envelope",
    "invoke_frame",
]
