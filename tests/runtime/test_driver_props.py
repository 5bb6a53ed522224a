"""Driver invariants over generated handler behaviour (the WirePair idea, in-process).

Whatever a handler yields or raises: fly/emit frames in yield order, at most one `error`,
nothing but `end` after it, exactly one `end`, always last.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asya_runtime.testing import run_handler_sync
from asya_runtime.wire import Emit, End, Error, Fly

steps = st.lists(
    st.one_of(
        st.just(("fly",)),
        st.just(("emit",)),
        st.just(("none",)),
        st.just(("set",)),
        st.just(("get",)),
        st.just(("bad_verb",)),
        st.just(("denied",)),
        st.just(("raise",)),
        st.just(("untyped",)),
    ),
    max_size=12,
)


def _script(items: list[tuple[str]], sync: bool) -> Any:
    def actions() -> Any:
        for i, (kind,) in enumerate(items):
            if kind == "fly":
                yield "FLY", {"i": i}
            elif kind == "emit":
                yield {"i": i}
            elif kind == "none":
                yield None
            elif kind == "set":
                yield "SET", ".headers.i", i
            elif kind == "get":
                got = yield "GET", ".headers.i"
                assert got is None or isinstance(got, int)
            elif kind == "bad_verb":
                yield "NOPE", i
            elif kind == "denied":
                yield "SET", ".route.curr", "x"
            elif kind == "raise":
                raise RuntimeError(f"step {i}")
            else:
                yield {"x": object()}

    if sync:
        return lambda payload: actions()

    async def agen(payload: Any) -> Any:
        gen = actions()
        reply = None
        try:
            while True:
                reply = yield gen.send(reply)
        except StopIteration:
            return

    return agen


def _expected(items: list[tuple[str]]) -> list[str]:
    out = []
    for (kind,) in items:
        if kind in ("fly", "emit"):
            out.append(kind)
        elif kind in ("bad_verb", "denied", "raise", "untyped"):
            out.append("error")
            break
    return [*out, "end"]


@given(items=steps, sync=st.booleans())
@settings(max_examples=150, deadline=None)
def test_frames_follow_the_yields_and_end_once_last(items: list[tuple[str]], sync: bool) -> None:
    frames = run_handler_sync(_script(items, sync), {})
    kinds = [type(f).__name__.lower() for f in frames]
    assert kinds == _expected(items)
    assert sum(isinstance(f, End) for f in frames) == 1 and isinstance(frames[-1], End)
    for f in frames:
        if isinstance(f, Fly | Emit):
            assert "i" in (f.data if isinstance(f, Fly) else f.payload)
        if isinstance(f, Error):
            assert f.code == "processing_error" and f.message
