"""The whole lifecycle of one runtime-side connection, as one table (like h11's `_state.py`). Pure.

Rules of this file: every state and every transition is in `_TRANSITIONS`; a (state, event)
pair that is not listed raises the protocol error of whoever is at fault (the peer for frames
it sent, us for the rest), naming the event and the state. `Connection` also owns the data the
transitions move: the invoke waiting to run and the fatal `error` an invocation must end with.
It never touches a socket, a task or a clock; `server.py` feeds it events and carries out what
it returns.

Events: from the peer `invoke`, `cancel`, `eof` (the peer closed), `protocol_error` (a bad or
oversized frame, an illegal frame); local `end` (the invocation is over: write its `end`),
`drain` (shutdown began), `shut_read` (draining and idle: we shut our read side), `write_failed`
(the socket is broken), `close` (the connection task is finished).

    state          invoke      cancel        eof / write_failed     protocol_error  end
    IDLE           RUNNING q   IDLE          DONE                   DONE r          -
    RUNNING        - (peer)    CANCELLING c  CLOSING c              CLOSING f       IDLE e
    CANCELLING     - (peer)    CANCELLING    CLOSING                CLOSING f       IDLE e
    DRAINING       D_RUN q     DRAINING      DONE                   DONE r          -
    D_RUN          - (peer)    D_CANCEL c    CLOSING c              CLOSING f       DRAINING e
    D_CANCEL       - (peer)    D_CANCEL      CLOSING                CLOSING f       DRAINING e
    READ_SHUT      R_RUN q     READ_SHUT     READ_SHUT¹ / DONE      DONE r          -
    R_RUN          - (peer)    R_CANCEL c    R_RUN¹ / CLOSING c     CLOSING f       READ_SHUT e
    R_CANCEL       - (peer)    R_CANCEL      R_CANCEL¹ / CLOSING    CLOSING f       READ_SHUT e
    CLOSING        - (peer)    CLOSING       CLOSING                CLOSING         DONE e
    DONE           - (peer)    DONE          DONE                   DONE            - (local)
    CLOSED         - (peer)    CLOSED        CLOSED                 CLOSED          CLOSED ²

    (D_ = DRAINING_, R_ = READ_SHUT_; RUN = RUNNING, CANCEL = CANCELLING.)
    actions: q queue the envelope, c cancel the invocation, f cancel it and end it with the
    error, r answer `error` + `end` now, e write the invocation's `end` (after its fatal error).
    ¹ after our own `shut_read`, EOF is ours, not the peer leaving. ² nothing is written.
    `drain`: IDLE → DRAINING, RUNNING/CANCELLING → their D_ state, others unchanged.
    `shut_read`: DRAINING → READ_SHUT only. `close`: every state → CLOSED.

What the shell does next (`next_action`): RUN when an invoke waits, else WAIT (IDLE), QUIESCE
(DRAINING: close unless a last invoke arrives, see server.py), or CLOSE (READ_SHUT, DONE).
An invoke cancelled before it started is not run (`start` says so); it still gets its `end`.
"""

from __future__ import annotations

import enum
from typing import Final

from .abi import error_frame
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .wire import End, Error

__all__ = ["ConnAction", "ConnEvent", "ConnState", "Connection", "ConnectionState"]


class ConnState(enum.Enum):
    # Enum's own __hash__ is Python code (hash of the name); members are singletons and
    # compare by identity, so the identity hash is equivalent and C-fast (table lookups).
    __hash__ = object.__hash__

    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    DRAINING = "draining"
    DRAINING_RUNNING = "running (draining)"
    DRAINING_CANCELLING = "cancelling (draining)"
    READ_SHUT = "draining, read side shut"
    READ_SHUT_RUNNING = "running (draining, read side shut)"
    READ_SHUT_CANCELLING = "cancelling (draining, read side shut)"
    CLOSING = "closing"
    DONE = "done"
    CLOSED = "closed"


class ConnEvent(enum.StrEnum):
    __hash__ = str.__hash__  # equal to its value as a str, so it must hash like one

    INVOKE = "invoke"
    CANCEL = "cancel"
    EOF = "eof"
    PROTOCOL_ERROR = "protocol_error"
    END = "end"
    DRAIN = "drain"
    SHUT_READ = "shut_read"
    WRITE_FAILED = "write_failed"
    CLOSE = "close"


class ConnAction(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    QUIESCE = "quiesce"
    CLOSE = "close"


class _Do(enum.Enum):
    NOTHING = ""
    QUEUE = "q"
    CANCEL = "c"
    FAIL = "f"
    REPLY = "r"
    END = "e"


S = ConnState
E = ConnEvent
_N, _Q, _C, _F, _R, _E = _Do.NOTHING, _Do.QUEUE, _Do.CANCEL, _Do.FAIL, _Do.REPLY, _Do.END

_TRANSITIONS: Final[dict[tuple[ConnState, ConnEvent], tuple[ConnState, _Do]]] = {
    # -- open ------------------------------------------------------------------------------
    (S.IDLE, E.INVOKE): (S.RUNNING, _Q),
    (S.IDLE, E.CANCEL): (S.IDLE, _N),  # a cancel that crossed our `end` on the wire: ignored
    (S.IDLE, E.EOF): (S.DONE, _N),
    (S.IDLE, E.WRITE_FAILED): (S.DONE, _N),
    (S.IDLE, E.PROTOCOL_ERROR): (S.DONE, _R),
    (S.IDLE, E.DRAIN): (S.DRAINING, _N),
    (S.RUNNING, E.CANCEL): (S.CANCELLING, _C),
    (S.RUNNING, E.EOF): (S.CLOSING, _C),
    (S.RUNNING, E.WRITE_FAILED): (S.CLOSING, _C),
    (S.RUNNING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.RUNNING, E.END): (S.IDLE, _E),
    (S.RUNNING, E.DRAIN): (S.DRAINING_RUNNING, _N),
    (S.CANCELLING, E.CANCEL): (S.CANCELLING, _N),
    (S.CANCELLING, E.EOF): (S.CLOSING, _N),
    (S.CANCELLING, E.WRITE_FAILED): (S.CLOSING, _N),
    (S.CANCELLING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.CANCELLING, E.END): (S.IDLE, _E),
    (S.CANCELLING, E.DRAIN): (S.DRAINING_CANCELLING, _N),
    # -- draining (shutdown): finish what was received, then close --------------------------
    (S.DRAINING, E.INVOKE): (S.DRAINING_RUNNING, _Q),
    (S.DRAINING, E.CANCEL): (S.DRAINING, _N),
    (S.DRAINING, E.EOF): (S.DONE, _N),
    (S.DRAINING, E.WRITE_FAILED): (S.DONE, _N),
    (S.DRAINING, E.PROTOCOL_ERROR): (S.DONE, _R),
    (S.DRAINING, E.DRAIN): (S.DRAINING, _N),
    (S.DRAINING, E.SHUT_READ): (S.READ_SHUT, _N),
    (S.DRAINING_RUNNING, E.CANCEL): (S.DRAINING_CANCELLING, _C),
    (S.DRAINING_RUNNING, E.EOF): (S.CLOSING, _C),
    (S.DRAINING_RUNNING, E.WRITE_FAILED): (S.CLOSING, _C),
    (S.DRAINING_RUNNING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.DRAINING_RUNNING, E.END): (S.DRAINING, _E),
    (S.DRAINING_RUNNING, E.DRAIN): (S.DRAINING_RUNNING, _N),
    (S.DRAINING_CANCELLING, E.CANCEL): (S.DRAINING_CANCELLING, _N),
    (S.DRAINING_CANCELLING, E.EOF): (S.CLOSING, _N),
    (S.DRAINING_CANCELLING, E.WRITE_FAILED): (S.CLOSING, _N),
    (S.DRAINING_CANCELLING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.DRAINING_CANCELLING, E.END): (S.DRAINING, _E),
    (S.DRAINING_CANCELLING, E.DRAIN): (S.DRAINING_CANCELLING, _N),
    # -- read side shut: only what was already buffered can still arrive ---------------------
    (S.READ_SHUT, E.INVOKE): (S.READ_SHUT_RUNNING, _Q),
    (S.READ_SHUT, E.CANCEL): (S.READ_SHUT, _N),
    (S.READ_SHUT, E.EOF): (S.READ_SHUT, _N),  # our own shutdown's EOF
    (S.READ_SHUT, E.WRITE_FAILED): (S.DONE, _N),
    (S.READ_SHUT, E.PROTOCOL_ERROR): (S.DONE, _R),
    (S.READ_SHUT, E.DRAIN): (S.READ_SHUT, _N),
    (S.READ_SHUT_RUNNING, E.CANCEL): (S.READ_SHUT_CANCELLING, _C),
    (S.READ_SHUT_RUNNING, E.EOF): (S.READ_SHUT_RUNNING, _N),
    (S.READ_SHUT_RUNNING, E.WRITE_FAILED): (S.CLOSING, _C),
    (S.READ_SHUT_RUNNING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.READ_SHUT_RUNNING, E.END): (S.READ_SHUT, _E),
    (S.READ_SHUT_RUNNING, E.DRAIN): (S.READ_SHUT_RUNNING, _N),
    (S.READ_SHUT_CANCELLING, E.CANCEL): (S.READ_SHUT_CANCELLING, _N),
    (S.READ_SHUT_CANCELLING, E.EOF): (S.READ_SHUT_CANCELLING, _N),
    (S.READ_SHUT_CANCELLING, E.WRITE_FAILED): (S.CLOSING, _N),
    (S.READ_SHUT_CANCELLING, E.PROTOCOL_ERROR): (S.CLOSING, _F),
    (S.READ_SHUT_CANCELLING, E.END): (S.READ_SHUT, _E),
    (S.READ_SHUT_CANCELLING, E.DRAIN): (S.READ_SHUT_CANCELLING, _N),
    # -- input over (peer gone, or it broke the protocol): end the invocation, then close ----
    (S.CLOSING, E.CANCEL): (S.CLOSING, _N),
    (S.CLOSING, E.EOF): (S.CLOSING, _N),
    (S.CLOSING, E.WRITE_FAILED): (S.CLOSING, _N),
    (S.CLOSING, E.PROTOCOL_ERROR): (S.CLOSING, _N),
    (S.CLOSING, E.END): (S.DONE, _E),
    (S.CLOSING, E.DRAIN): (S.CLOSING, _N),
    (S.DONE, E.CANCEL): (S.DONE, _N),
    (S.DONE, E.EOF): (S.DONE, _N),
    (S.DONE, E.WRITE_FAILED): (S.DONE, _N),
    (S.DONE, E.PROTOCOL_ERROR): (S.DONE, _N),
    (S.DONE, E.DRAIN): (S.DONE, _N),
    # -- closed: nothing is written any more ------------------------------------------------
    (S.CLOSED, E.CANCEL): (S.CLOSED, _N),
    (S.CLOSED, E.EOF): (S.CLOSED, _N),
    (S.CLOSED, E.WRITE_FAILED): (S.CLOSED, _N),
    (S.CLOSED, E.PROTOCOL_ERROR): (S.CLOSED, _N),
    (S.CLOSED, E.END): (S.CLOSED, _N),
    (S.CLOSED, E.DRAIN): (S.CLOSED, _N),
    **{(s, E.CLOSE): (S.CLOSED, _N) for s in ConnState},
}

_PEER_EVENTS: Final = frozenset({E.INVOKE, E.CANCEL, E.EOF, E.PROTOCOL_ERROR})
#: States where an invocation has been accepted and its `end` is still owed.
INVOKED: Final = frozenset(
    {
        S.RUNNING,
        S.CANCELLING,
        S.DRAINING_RUNNING,
        S.DRAINING_CANCELLING,
        S.READ_SHUT_RUNNING,
        S.READ_SHUT_CANCELLING,
        S.CLOSING,
    }
)
_RUNNABLE: Final = frozenset({S.RUNNING, S.DRAINING_RUNNING, S.READ_SHUT_RUNNING})
_NEXT: Final = {
    S.IDLE: ConnAction.WAIT,
    S.DRAINING: ConnAction.QUIESCE,
    S.READ_SHUT: ConnAction.CLOSE,
    S.DONE: ConnAction.CLOSE,
    S.CLOSED: ConnAction.CLOSE,
}


class ConnectionState:
    """The table alone: `on(event)` moves `state`, or raises naming the event and the state."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = ConnState.IDLE

    def on(self, event: ConnEvent | str) -> ConnState:
        self._apply(ConnEvent(event))
        return self.state

    def _apply(self, event: ConnEvent) -> _Do:
        try:
            self.state, do = _TRANSITIONS[(self.state, event)]
        except KeyError:
            err = RemoteProtocolError if event in _PEER_EVENTS else LocalProtocolError
            raise err(
                f"{event.value!r} is not allowed while the connection is {self.state.value}"
            ) from None
        return do

    def close(self) -> None:
        self._apply(ConnEvent.CLOSE)


class Connection(ConnectionState):
    """The table plus the data it moves. Each method is one event; the return value is what
    the shell must do (cancel the running invocation, write these frames)."""

    __slots__ = ("_fatal", "_pending")

    def __init__(self) -> None:
        super().__init__()
        self._pending: object | None = None  # the invoke's envelope (a msgspec.Raw)
        self._fatal: Error | None = None

    @property
    def busy(self) -> bool:
        """An invocation was accepted and has not ended."""
        return self.state in INVOKED

    def next_action(self) -> ConnAction:
        if self._pending is not None:
            return ConnAction.RUN
        try:
            return _NEXT[self.state]
        except KeyError:
            raise LocalProtocolError(
                f"nothing to do while the connection is {self.state.value}: "
                "the invocation is still running"
            ) from None

    # -- peer events ----------------------------------------------------------------------

    def invoke(self, envelope: object) -> None:
        """Raises `RemoteProtocolError` while an invocation runs (feed that to `failed`)."""
        self._apply(ConnEvent.INVOKE)
        self._pending = envelope

    def cancel(self) -> bool:
        """True: cancel the running invocation now."""
        return self._apply(ConnEvent.CANCEL) is _Do.CANCEL

    def eof(self) -> bool:
        """The peer closed. True: cancel the running invocation now."""
        return self._apply(ConnEvent.EOF) is _Do.CANCEL

    def write_failed(self) -> bool:
        """The socket is broken. True: cancel the running invocation now."""
        return self._apply(ConnEvent.WRITE_FAILED) is _Do.CANCEL

    def failed(self, exc: ProtocolError) -> tuple[bool, list[Error | End]]:
        """The peer broke the protocol: (cancel the invocation now?, frames to write now)."""
        do = self._apply(ConnEvent.PROTOCOL_ERROR)
        if do is _Do.REPLY:
            return False, [error_frame(exc), End()]
        if do is _Do.FAIL:
            self._fatal = error_frame(exc)  # the invocation ends with it, before its `end`
            return True, []
        return False, []

    # -- local events ---------------------------------------------------------------------

    def start(self) -> tuple[object, bool]:
        """Take the queued invoke: (its envelope, whether to run it). An invoke cancelled
        before it started (cancel or EOF in the same read) is not run; it still ends."""
        envelope, self._pending = self._pending, None
        if envelope is None:
            raise LocalProtocolError(
                f"no invoke to start while the connection is {self.state.value}"
            )
        return envelope, self.state in _RUNNABLE

    def end(self) -> list[Error | End]:
        """The invocation is over: the frames that close it (nothing once closed)."""
        do = self._apply(ConnEvent.END)
        if do is not _Do.END:
            return []
        fatal, self._fatal = self._fatal, None
        return [End()] if fatal is None else [fatal, End()]

    def drain(self) -> None:
        self._apply(ConnEvent.DRAIN)

    def shut_read(self) -> None:
        self._apply(ConnEvent.SHUT_READ)
