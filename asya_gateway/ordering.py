"""FLY-before-terminal by counting: one task's FLYs released in `seq` order, and the terminal
status released once the task has seen the `flies` its sidecars reported (or a bound passes).

Pure and synchronous: the caller passes `now` and acts on what comes back; the only notion of
time is the deadline each gate reports (`due`), which the caller's timer honours by calling
`expire(now)`. Knows nothing about HTTP, SSE or the store.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class FlyGate(Generic[T]):
    """Orders one task's FLYs and holds its terminal status until they are all through.

    - A FLY without `seq` (upstream sidecars) passes at once, counted.
    - `seq == expected`: passes, and so do the held FLYs it unblocks.
    - `seq > expected`: held, at most `max_held` FLYs for at most `hold_seconds`; then the gap
      is given up (counted in `gaps`) and the held FLYs pass in order.
    - `seq < expected`: a duplicate or a FLY whose gap was given up: dropped (`late`), so
      clients never see FLYs out of order.
    - `hold_terminal(item, flies)`: passes at once when `flies` FLYs are through, else waits
      until they are, or until no FLY has come for `terminal_seconds` (a flood still
      draining keeps it waiting), and `terminal_max_seconds` at most.
    """

    def __init__(
        self,
        *,
        hold_seconds: float,
        max_held: int,
        terminal_seconds: float,
        terminal_max_seconds: float = 30.0,
    ) -> None:
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self.terminal_seconds = terminal_seconds
        self.terminal_max_seconds = max(terminal_max_seconds, terminal_seconds)
        self.expected = 0  # next seq due
        self.unordered = 0  # FLYs that came without seq
        self.late = 0
        self.gaps = 0
        self._held: dict[int, tuple[int, T]] = {}
        self._held_since: float | None = None
        # (item, flies, give up at, give up at the latest)
        self._terminal: tuple[T, int, float, float] | None = None

    @property
    def through(self) -> int:
        """FLYs accounted for: passed, or given up as a gap."""
        return self.expected + self.unordered

    @property
    def waiting(self) -> bool:
        """A terminal status is held."""
        return self._terminal is not None

    @property
    def due(self) -> float | None:
        """When `expire` must be called next (None: nothing is held)."""
        held, terminal = self._held_since, self._terminal  # read after every FLY: no lists
        if held is None:
            return None if terminal is None else terminal[2]
        gap = held + self.hold_seconds
        return gap if terminal is None or gap < terminal[2] else terminal[2]

    def offer(self, item: T, seq: int | None, n: int, now: float) -> list[T]:
        """A FLY arrived; returns what may be published now, in order (maybe a terminal last)."""
        if seq == self.expected and not self._held and self._terminal is None:
            self.expected += n  # the common case, in order with nothing waiting: at once
            return [item]
        if self._terminal is not None:  # FLYs still coming: the terminal waits on for them
            term, flies, _, cap = self._terminal
            self._terminal = (term, flies, min(now + self.terminal_seconds, cap), cap)
        if seq is None:
            self.unordered += n
            return [item, *self._terminal_if_done()]
        if seq < self.expected or seq in self._held:
            self.late += 1
            return []
        if seq > self.expected:
            self._held[seq] = (n, item)
            if self._held_since is None:
                self._held_since = now
            if len(self._held) > self.max_held:
                return self._give_up()
            return []
        self.expected += n
        out = [item, *self._release()]
        return out + self._terminal_if_done()

    def hold_terminal(self, item: T, flies: int | None, now: float) -> list[T]:
        """A terminal status arrived: `[item]` if it may go now, else `[]` (held)."""
        if flies is None or self.through >= flies:
            return [*self._give_up(), item] if self._held else [item]
        self._terminal = (item, flies, now + self.terminal_seconds, now + self.terminal_max_seconds)
        return []

    def expire(self, now: float) -> list[T]:
        """The timer fired: give up on gaps held too long, and on a terminal held too long."""
        out: list[T] = []
        if self._held_since is not None and now >= self._held_since + self.hold_seconds:
            out += self._give_up()
        if self._terminal is not None and now >= self._terminal[2]:
            item = self._terminal[0]
            self._terminal = None  # the FLYs it waited for are given up on
            out += [*self._give_up(), item]
        return out

    def _release(self) -> list[T]:
        out: list[T] = []
        while self.expected in self._held:
            n, item = self._held.pop(self.expected)
            self.expected += n
            out.append(item)
        if not self._held:
            self._held_since = None
        return out

    def _give_up(self) -> list[T]:
        """Skip to the lowest held seq (a gap that will not be filled) and release from there."""
        out: list[T] = []
        while self._held:
            self.gaps += 1
            self.expected = min(self._held)
            out += self._release()
        self._held_since = None
        return out + self._terminal_if_done()

    def _terminal_if_done(self) -> list[T]:
        if self._terminal is not None and self.through >= self._terminal[1]:
            item = self._terminal[0]
            self._terminal = None
            return [item]
        return []


__all__ = ["FlyGate"]
