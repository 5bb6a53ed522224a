"""The FLY gate: FLYs in seq order, the terminal after `flies` of them or the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.ordering import FlyGate


def gate(**kw: float) -> FlyGate[str]:
    opts = {"hold_seconds": 1.0, "max_held": 100, "terminal_seconds": 1.0} | kw
    return FlyGate(
        hold_seconds=opts["hold_seconds"],
        max_held=int(opts["max_held"]),
        terminal_seconds=opts["terminal_seconds"],
    )


@given(st.permutations(list(range(30))), st.integers(0, 30))
def test_any_arrival_order_publishes_in_seq_order_then_terminal(order: list[int], at: int) -> None:
    g = gate()
    out: list[str] = []
    for k, seq in enumerate(order):
        if k == at:
            out += g.hold_terminal("END", 30, 0.0)
        out += g.offer(f"f{seq}", seq, 1, 0.0)
    if at >= len(order):
        out += g.hold_terminal("END", 30, 0.0)
    assert out == [f"f{i}" for i in range(30)] + ["END"]
    assert g.due is None and not g.waiting


def test_gap_is_given_up_after_the_bound_and_late_fly_dropped() -> None:
    g = gate(hold_seconds=0.5)
    assert g.offer("a", 0, 1, 0.0) == ["a"]
    assert g.offer("c", 2, 1, 0.1) == []
    assert g.due == 0.6
    assert g.expire(0.5) == []
    assert g.expire(0.6) == ["c"]
    assert g.offer("b", 1, 1, 0.7) == [] and g.late == 1 and g.gaps == 1


def test_terminal_waits_for_the_count_or_the_bound() -> None:
    g = gate(terminal_seconds=1.0)
    assert g.hold_terminal("END", 2, 0.0) == []
    assert g.offer("a", 0, 1, 0.1) == ["a"]
    assert g.expire(0.99) == []
    assert g.expire(1.0) == ["END"]
    g2 = gate()
    assert g2.hold_terminal("END", None, 0.0) == ["END"]  # no count: at once
    g3 = gate()
    g3.hold_terminal("END", 3, 0.0)
    assert g3.offer("ab", 0, 2, 0.0) == ["ab"]  # n=2: two FLYs merged
    assert g3.offer("c", None, 1, 0.0) == ["c", "END"]  # uncounted FLYs count too


def test_holding_is_bounded_in_size() -> None:
    g = gate(max_held=3)
    for s in (1, 2, 3):
        assert g.offer(f"f{s}", s, 1, 0.0) == []
    assert g.offer("f4", 4, 1, 0.0) == ["f1", "f2", "f3", "f4"]
