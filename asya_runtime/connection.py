"""The state of one runtime-side connection, as a table (like h11's `_state.py`). Pure.

All transitions live in `_TRANSITIONS`; anything not listed is an error naming the event and
the state. The server feeds it the frames it reads (`invoke`, `cancel`) and the `end` it is
about to write; it never touches a socket.

    state       invoke        cancel        end (sent)
    ---------   -----------   -----------   ----------
    IDLE        RUNNING       IDLE (late)   error (local)
    RUNNING     error (peer)  CANCELLING    IDLE
    CANCELLING  error (peer)  CANCELLING    IDLE
    CLOSED      error (peer)  CLOSED        CLOSED
"""

from __future__ import annotations

import enum
from typing import Final

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ConnState", "ConnectionState"]


class ConnState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CLOSED = "closed"


_I, _R, _C, _X = ConnState.IDLE, ConnState.RUNNING, ConnState.CANCELLING, ConnState.CLOSED

_TRANSITIONS: Final[dict[tuple[ConnState, str], ConnState]] = {
    (_I, "invoke"): _R,
    (_I, "cancel"): _I,  # a cancel that crossed our `end` on the wire: ignored
    (_R, "cancel"): _C,
    (_C, "cancel"): _C,
    (_R, "end"): _I,
    (_C, "end"): _I,
    (_X, "cancel"): _X,
    (_X, "end"): _X,
}

_PEER_EVENTS: Final = frozenset({"invoke", "cancel"})


class ConnectionState:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = ConnState.IDLE

    def on(self, event: str) -> ConnState:
        """Apply `event`; raise the protocol error of whoever is at fault if it is illegal."""
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            err = RemoteProtocolError if event in _PEER_EVENTS else LocalProtocolError
            raise err(
                f"{event!r} is not allowed while the connection is {self.state.value}"
            ) from None
        return self.state

    def close(self) -> None:
        self.state = ConnState.CLOSED
