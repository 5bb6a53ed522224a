"""Codec properties: round trips under arbitrary chunking, and h11's fuzz invariant."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asya_runtime.codec import NEED_DATA, FrameWriter, runtime_reader, sidecar_reader
from asya_runtime.errors import LocalProtocolError, RemoteProtocolError
from asya_runtime.wire import Emit, End, Envelope, Fly, Route, decode_envelope, invoke_frame

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
json_data = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return [c for c in out if c]


def _decode_all(reader: Any, chunks: list[bytes]) -> list[Any]:
    frames = []
    for c in chunks:
        reader.feed(c)
        while (f := reader.next_frame()) is not NEED_DATA:
            assert f is not None
            frames.append(f)
    reader.feed(b"")
    assert reader.next_frame() is None
    return frames


@given(payloads=st.lists(json_data, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 10**6)))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_payloads_round_trip_under_any_chunking(payloads: list[Any], cuts: list[int]) -> None:
    w = FrameWriter()
    route = Route(prev=["a"], curr="b", next=["c"])
    frames = [Emit(payload=p, route=route) for p in payloads]
    frames += [Fly(data={"p": p}) for p in payloads] + [End()]
    data = w.encode_many(frames)  # type: ignore[arg-type]
    assert _decode_all(sidecar_reader(), _chunks(data, cuts)) == frames


@given(payload=json_data)
def test_envelope_round_trips_inside_invoke(payload: Any) -> None:
    env = Envelope(id="x", route=Route(prev=[], curr="a", next=["b"]), payload=payload)
    w = FrameWriter()
    r = runtime_reader()
    r.feed(w.encode(invoke_frame(env)))
    frame = r.next_frame()
    assert decode_envelope(frame.envelope) == env  # type: ignore[union-attr]


def _fuzz(reader: Any, data: bytes, byte_by_byte: bool) -> None:
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    try:
        for c in [*chunks, b""]:
            reader.feed(c)
            while True:
                f = reader.next_frame()
                if f is NEED_DATA or f is None:
                    break
    except RemoteProtocolError:
        pass


@given(data=st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_give_frames_or_remote_protocol_error(data: bytes) -> None:
    for byte_by_byte in (False, True):
        _fuzz(runtime_reader(max_frame_bytes=1024), data, byte_by_byte)
        _fuzz(sidecar_reader(max_frame_bytes=1024), data, byte_by_byte)


@given(body=st.binary(max_size=200))
def test_length_prefixed_garbage_is_a_remote_error(body: bytes) -> None:
    data = len(body).to_bytes(4, "big") + body
    for byte_by_byte in (False, True):
        _fuzz(runtime_reader(), data, byte_by_byte)


def test_oversized_prefix_is_refused_before_buffering() -> None:
    r = runtime_reader(max_frame_bytes=100)
    r.feed((101).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        r.next_frame()


def test_writer_refuses_oversized_frame_and_leaves_buffer_intact() -> None:
    w = FrameWriter(max_frame_bytes=64)
    out = bytearray(b"keep")
    with pytest.raises(LocalProtocolError):
        w.append(Fly(data={"x": "y" * 100}), out)
    assert out == b"keep"
    w.append(End(), out)
    assert msgspec.msgpack.decode(bytes(out[8:])) == {"t": "end"}


@pytest.mark.parametrize(
    "body",
    [
        b"\x81\xa1t\xa2\xff\xfe",  # the tag is invalid UTF-8 (UnicodeDecodeError in msgspec)
        b"\x81\xa2\xff\xfe\x01",  # a key is invalid UTF-8
        b"\x82\xa1t\xa6invoke\xa8envelope\xc1",  # reserved byte
    ],
)
def test_invalid_utf8_and_reserved_bytes_are_remote_errors(body: bytes) -> None:
    for byte_by_byte in (False, True):
        _fuzz(runtime_reader(), len(body).to_bytes(4, "big") + body, byte_by_byte)
