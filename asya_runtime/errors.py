"""The project's error tree, shared by runtime, sidecar and gateway.

    AsyaError
     ├── ProtocolError            (the wire was misused; never raised directly)
     │    ├── LocalProtocolError   we tried to send something illegal
     │    └── RemoteProtocolError  the peer sent something illegal (bad frame, oversized frame)
     ├── AbiError                 the handler misused the yield ABI (bad verb, denied path, ...)
     └── HandlerLoadError         a handler spec could not be loaded

The queue layer's errors (`TransportError` and below) live with the queues, in
`asya_mesh.transports.errors`: the runtime never touches a queue.

Handler exceptions are not wrapped: they travel as `error` frames built by `abi.error_frame`.
"""

from __future__ import annotations


class AsyaError(Exception):
    """Base of every error this project raises on purpose."""


class ProtocolError(AsyaError):
    """The wire protocol was violated. Instantiate a subclass, which says who is at fault."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("use LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We were about to violate the protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol."""


class AbiError(AsyaError):
    """The handler misused the yield ABI; reported as `processing_error`."""


class HandlerLoadError(AsyaError):
    """The handler spec could not be turned into a callable."""


def error_code(exc: BaseException) -> str:
    """The one place that picks the spec's error code for an exception.

    A peer's bad bytes or a malformed envelope → `msg_parsing_error`; everything else (handler
    exceptions, ABI misuse, unconvertible values) → `processing_error`.
    """
    import msgspec  # local: keep this module importable without the codec

    from .wire import MSG_PARSING_ERROR, PROCESSING_ERROR

    if isinstance(exc, RemoteProtocolError | msgspec.DecodeError):
        return MSG_PARSING_ERROR
    return PROCESSING_ERROR


__all__ = [
    "AbiError",
    "AsyaError",
    "HandlerLoadError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "error_code",
]
