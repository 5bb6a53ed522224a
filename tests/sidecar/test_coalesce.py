"""`forwarder.merge`: FLYs folded under pressure keep every character and their count."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from asya_mesh.events import FlyEvent
from asya_sidecar.forwarder import MAX_MERGED_BYTES, merge
from asya_sidecar.reports import fly


def _data(e: FlyEvent) -> dict[str, object]:
    out: dict[str, object] = msgspec.json.decode(e.data)
    return out


@given(st.lists(st.text(max_size=20), min_size=1, max_size=40), st.integers(0, 10**6))
def test_text_flys_fold_into_one_with_every_character(texts: list[str], start: int) -> None:
    acc = fly({"partial": True, "text": texts[0]}, seq=start)
    for i, t in enumerate(texts[1:], 1):
        merged = merge(acc, fly({"partial": True, "text": t}, seq=start + i))
        assert merged is not None
        acc = merged
    assert _data(acc) == {"partial": True, "text": "".join(texts)}
    assert (acc.seq, acc.n) == (start, len(texts))


def test_progress_like_keeps_the_latest() -> None:
    m = merge(fly({"progress": 0.1}, seq=0), fly({"progress": 0.2}, seq=1))
    assert m is not None and _data(m) == {"progress": 0.2} and (m.seq, m.n) == (0, 2)


def test_what_does_not_merge() -> None:
    t = fly({"partial": True, "text": "a"}, seq=0)
    assert merge(t, fly({"partial": True, "text": "b"}, seq=2)) is None  # not consecutive
    assert merge(t, fly({"progress": 1}, seq=1)) is None  # different kinds
    assert merge(fly({"a": 1}, seq=0), fly({"b": 1}, seq=1)) is None  # different keys
    assert merge(t, fly({"partial": True, "text": "b", "role": "x"}, seq=1)) is None
    big = fly({"partial": True, "text": "x" * MAX_MERGED_BYTES}, seq=0)
    assert merge(big, fly({"partial": True, "text": "y"}, seq=1)) is None  # bounded
    assert merge(fly({"p": 1}, seq=None), fly({"p": 2}, seq=None)) is not None  # uncounted
