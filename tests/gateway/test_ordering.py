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
    assert g.expire(1.09) == []  # the bound counts from the last FLY (0.1 s)
    assert g.expire(1.1) == ["END"]
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


def test_a_terminal_waits_while_its_flys_keep_coming_up_to_the_cap() -> None:
    """A flood the gateway drains slower than the handler made it: the terminal arrives
    long before its last FLYs. It waits while they keep coming (each restarts the bound),
    not a fixed second after the terminal, so no FLY is lost; and never past the cap."""
    g = FlyGate(hold_seconds=1.0, max_held=100, terminal_seconds=1.0, terminal_max_seconds=5.0)
    assert g.hold_terminal("END", 4, 0.0) == []
    assert g.offer("a", 0, 1, 0.9) == ["a"]
    assert g.expire(1.5) == []  # 1 s after the terminal, but a FLY came 0.6 s ago
    assert g.due == 1.9
    assert g.offer("b", 1, 1, 1.8) == ["b"]
    assert g.offer("c", 2, 1, 2.7) == ["c"]
    assert g.expire(3.6) == []
    assert g.offer("d", 3, 1, 3.6) == ["d", "END"]  # all four through: at once
    trickle = FlyGate(
        hold_seconds=1.0, max_held=100, terminal_seconds=1.0, terminal_max_seconds=5.0
    )
    trickle.hold_terminal("END", 1000, 0.0)
    out: list[str] = []
    for i in range(10):  # one FLY every 0.9 s, never all of them
        out += trickle.offer(f"f{i}", i, 1, 0.9 * (i + 1))
        out += trickle.expire(0.9 * (i + 1) + 0.05)
    # released at the 5 s cap (after f5, which came at 5.4 s while it was still held)
    assert out.index("END") == 6 and trickle.due is None
