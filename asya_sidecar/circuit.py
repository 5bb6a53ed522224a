"""A circuit breaker for one gateway's POSTs (sans-IO: the caller passes the clock).

Closed: every request is tried. `threshold` consecutive failures open it: nothing is tried for
`cooldown` seconds (doubling after each failed probe, up to `cap`). Once the cooldown is over
one request at a time is let through as a probe; its success closes the circuit.
"""

from __future__ import annotations

from typing import Final

THRESHOLD: Final = 5  # consecutive failed POSTs (5xx / network) that open the circuit
BASE_COOLDOWN: Final = 1.0
MAX_COOLDOWN: Final = 8.0


class Circuit:
    __slots__ = ("base", "cap", "cooldown", "failures", "open_until", "probing", "threshold")

    def __init__(
        self, *, threshold: int = THRESHOLD, base: float = BASE_COOLDOWN, cap: float = MAX_COOLDOWN
    ) -> None:
        self.threshold = threshold
        self.base = base
        self.cap = cap
        self.cooldown = base
        self.failures = 0
        self.open_until: float | None = None  # None = closed
        self.probing = False

    def is_open(self, now: float) -> bool:
        """True while requests are refused (cooling down, or a probe is out)."""
        return self.open_until is not None and (now < self.open_until or self.probing)

    def allow(self, now: float) -> bool:
        """May a request be tried now? After the cooldown, the first caller becomes the probe."""
        if self.open_until is None:
            return True
        if now < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def success(self) -> bool:
        """Record a request that went through; True if that closed an open circuit."""
        was_open = self.open_until is not None
        self.failures = 0
        self.open_until = None
        self.probing = False
        self.cooldown = self.base
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failed request; True if that opened a closed circuit."""
        self.failures += 1
        if self.probing:  # the probe failed: stay open, wait longer
            self.probing = False
            self.cooldown = min(self.cooldown * 2, self.cap)
            self.open_until = now + self.cooldown
            return False
        if self.open_until is None and self.failures >= self.threshold:
            self.open_until = now + self.cooldown
            return True
        return False


__all__ = ["Circuit"]
