"""The garbage collector's policy for long-running asya processes: freeze start-up objects.

A full collection walks every tracked object; right after start-up that is mostly modules,
classes and configuration that live until exit (100k+ objects once the gateway's or the
sidecar's libraries are imported), so each full pass costs milliseconds and lands on a random
request as tail latency. `gc.freeze()` moves them to a permanent generation the collector no
longer scans; collection itself stays on, so cycles made while serving are still reclaimed.
"""

from __future__ import annotations

import gc
from typing import Final

#: (young, middle, old) collection thresholds after start-up; CPython's default is (700, 10, 10).
THRESHOLDS: Final = (20_000, 20, 20)


def freeze_startup_objects() -> int:
    """Collect once, exempt everything alive now from later collections, and collect the
    young generation less often; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return gc.get_freeze_count()


__all__ = ["THRESHOLDS", "freeze_startup_objects"]
