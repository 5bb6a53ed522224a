"""Go-style duration strings (`300ms`, `5m`, `1h30m`, `1.5s`), as upstream Asya's env vars use.

The one parser of the project: the runtime, the sidecar, the gateway and `asya dev` all use it.
"""

from __future__ import annotations

import math
import re
from typing import Final

_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, *, negative: bool = False) -> float:
    """Seconds in a Go duration string; a bare number is seconds. Raises `ValueError`.

    A sign is accepted as Go accepts it, but a negative result only with `negative=True`.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
        if sign < 0 and not negative:
            raise ValueError(f"invalid duration {text!r} (must be >= 0)")
    if s == "0":
        return 0.0
    try:
        seconds = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"invalid duration {text!r} (must be finite)")
        return sign * seconds
    total = 0.0
    pos = 0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 300ms, 5m, 1h30m)")
    return sign * total


__all__ = ["parse_duration"]
