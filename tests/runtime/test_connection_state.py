"""The connection state table."""

from __future__ import annotations

import pytest

from asya_runtime.connection import ConnectionState, ConnState
from asya_runtime.errors import LocalProtocolError, RemoteProtocolError


@pytest.mark.parametrize(
    ("events", "final"),
    [
        (["invoke", "end"], ConnState.IDLE),
        (["invoke", "cancel", "end"], ConnState.IDLE),
        (["invoke", "cancel", "cancel", "end"], ConnState.IDLE),
        (["cancel"], ConnState.IDLE),
        (["invoke", "end", "invoke"], ConnState.RUNNING),
    ],
)
def test_legal_sequences(events: list[str], final: ConnState) -> None:
    s = ConnectionState()
    for e in events:
        s.on(e)
    assert s.state is final


def test_invoke_while_running_is_the_peers_fault() -> None:
    s = ConnectionState()
    s.on("invoke")
    with pytest.raises(
        RemoteProtocolError, match="'invoke' is not allowed while the connection is running"
    ):
        s.on("invoke")


def test_end_while_idle_is_our_fault() -> None:
    with pytest.raises(LocalProtocolError, match="idle"):
        ConnectionState().on("end")


def test_closed_absorbs_end_and_cancel() -> None:
    s = ConnectionState()
    s.on("invoke")
    s.close()
    s.on("cancel")
    s.on("end")
    with pytest.raises(RemoteProtocolError):
        s.on("invoke")


# -- the whole table ---------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from asya_runtime.connection import (  # noqa: E402
    _PEER_EVENTS,
    _TRANSITIONS,
    ConnAction,
    Connection,
    ConnEvent,
)
from asya_runtime.errors import ProtocolError  # noqa: E402
from asya_runtime.wire import End, Error  # noqa: E402


@pytest.mark.parametrize("state", list(ConnState))
@pytest.mark.parametrize("event", list(ConnEvent))
def test_every_pair_is_a_transition_or_an_error_naming_both(
    state: ConnState, event: ConnEvent
) -> None:
    s = ConnectionState()
    s.state = state
    if (state, event) in _TRANSITIONS:
        assert s.on(event) is _TRANSITIONS[(state, event)][0]
        return
    err = RemoteProtocolError if event in _PEER_EVENTS else LocalProtocolError
    with pytest.raises(err) as info:
        s.on(event)
    assert f"{event.value!r}" in str(info.value) and state.value in str(info.value)
    assert s.state is state  # an illegal event changes nothing


def test_every_state_is_reachable_and_close_always_closes() -> None:
    targets = {dst for dst, _ in _TRANSITIONS.values()}
    assert targets == set(ConnState)
    assert all(_TRANSITIONS[(s, ConnEvent.CLOSE)][0] is ConnState.CLOSED for s in ConnState)


class _Shell:
    """What server.py does with a `Connection`, minus the I/O: records every frame written."""

    def __init__(self) -> None:
        self.c = Connection()
        self.frames: list[Error | End] = []
        self.accepted = 0  # invokes the table took
        self.started = 0  # invocations actually run (not cancelled before they started)
        self.inflight = False
        self.cancelled_inflight = False
        self.closed = False
        self.ended = 0  # `end`s written by `end()` (one per finished invocation)
        self.lost = 0  # invokes still queued when the task was closed under them

    def write(self, frames: list[Error | End]) -> None:
        assert not self.closed or not frames, "nothing is written after close"
        self.frames += frames

    def peer(self, event: str) -> None:
        c = self.c
        try:
            if event == "invoke":
                before = c.state
                c.invoke(b"env")
                self.accepted += 1
                assert before is not c.state
            elif event == "cancel":
                if c.cancel():
                    assert self.inflight or c.next_action() is ConnAction.RUN
                    self.cancelled_inflight = self.inflight
            elif event == "eof":
                c.eof()
            elif event == "write_failed":
                c.write_failed()
            else:
                self.fail(RemoteProtocolError("bad frame"))
        except RemoteProtocolError as exc:
            assert event == "invoke" and "'invoke' is not allowed" in str(exc)
            self.fail(exc)

    def fail(self, exc: ProtocolError) -> None:
        _, frames = self.c.failed(exc)
        assert not (frames and self.c.busy), "an immediate reply only when nothing runs"
        self.write(frames)

    def step(self) -> None:
        """The serve loop's next move."""
        c = self.c
        if self.inflight:  # the running invocation finishes
            self.inflight = False
            frames = c.end()
            assert frames and isinstance(frames[-1], End), "each invocation ends with `end`"
            self.ended += 1
            self.write(frames)
            return
        if self.closed:
            return
        action = c.next_action()
        if action is ConnAction.RUN:
            _, run = c.start()
            self.started += run
            self.inflight = True
        elif action is ConnAction.QUIESCE:
            c.shut_read()
        elif action is ConnAction.CLOSE:
            self.close()

    def close(self) -> None:
        if not self.closed and self.c.busy:
            self.lost += 1  # queued, never started: the task was cancelled (grace over)
        self.c.close()
        self.closed = True


_EVENTS = st.sampled_from(
    ["invoke", "cancel", "eof", "write_failed", "protocol_error", "drain", "step", "step", "close"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_EVENTS, max_size=40))
def test_one_end_per_invoke_always_last_nothing_after_close(events: list[str]) -> None:
    sh = _Shell()
    for e in events:
        if e == "step":
            sh.step()
        elif e == "close":
            if sh.inflight:
                sh.step()  # the connection task ends its invocation before closing
            sh.close()
        elif e == "drain":
            sh.c.drain()
        else:
            sh.peer(e)
    if not sh.closed:  # let the shell run to completion: it must reach CLOSE or WAIT
        for _ in range(10):
            if sh.inflight or sh.c.next_action() not in (ConnAction.WAIT, ConnAction.CLOSE):
                sh.step()
        assert not sh.c.busy
    # Exactly one `end` per accepted invoke (bar one lost when the task was closed under a
    # queued invoke); every other `end` closes an immediate error reply.
    assert sh.ended == sh.accepted - sh.lost
    ends = sum(isinstance(f, End) for f in sh.frames)
    errors = sum(isinstance(f, Error) for f in sh.frames)
    assert ends - sh.ended <= errors
    # Shape: (error?, end)*: an error is always followed by its end, the stream ends in `end`.
    for i, f in enumerate(sh.frames):
        if isinstance(f, Error):
            assert i + 1 < len(sh.frames) and isinstance(sh.frames[i + 1], End)
    if sh.frames:
        assert isinstance(sh.frames[-1], End)
    assert sh.started <= sh.accepted


def test_invoke_cancelled_in_the_same_read_is_not_run_but_ends() -> None:
    c = Connection()
    c.invoke(b"env")
    assert c.cancel() is True  # cancel (nothing runs yet: start() will say so)
    assert c.next_action() is ConnAction.RUN
    assert c.start() == (b"env", False)
    assert [type(f) for f in c.end()] == [End]
    assert c.state is ConnState.IDLE


def test_protocol_error_while_running_ends_the_invocation_with_it() -> None:
    c = Connection()
    c.invoke(b"env")
    c.start()
    cancel, now = c.failed(RemoteProtocolError("frame of 9 bytes exceeds the limit"))
    assert cancel and now == []
    frames = c.end()
    assert [type(f) for f in frames] == [Error, End]
    assert "exceeds" in frames[0].message and frames[0].code == "msg_parsing_error"  # type: ignore[union-attr]
    assert c.next_action() is ConnAction.CLOSE


def test_protocol_error_while_idle_answers_error_end_and_closes() -> None:
    c = Connection()
    cancel, now = c.failed(RemoteProtocolError("malformed frame"))
    assert not cancel and [type(f) for f in now] == [Error, End]
    assert c.next_action() is ConnAction.CLOSE


def test_drain_finishes_the_invocation_then_quiesces_then_closes() -> None:
    c = Connection()
    c.invoke(b"env")
    c.start()
    c.drain()
    assert c.busy and c.state is ConnState.DRAINING_RUNNING
    assert [type(f) for f in c.end()] == [End]
    assert c.next_action() is ConnAction.QUIESCE
    c.shut_read()
    c.eof()  # our own shutdown's EOF: not the peer leaving
    c.invoke(b"last")  # it was already in our buffer: it runs
    assert c.start() == (b"last", True)
    c.end()
    assert c.next_action() is ConnAction.CLOSE


def test_nothing_is_written_after_close() -> None:
    c = Connection()
    c.invoke(b"env")
    c.start()
    c.close()
    assert c.end() == [] and c.failed(RemoteProtocolError("x")) == (False, [])
    with pytest.raises(
        RemoteProtocolError, match="'invoke' is not allowed while the connection is closed"
    ):
        c.invoke(b"again")
