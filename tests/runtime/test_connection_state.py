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
