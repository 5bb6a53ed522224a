"""The garbage collector's policy for long-running asya processes: freeze start-up objects.

A full collection walks every tracked object; right after start-up that is mostly modules,
classes and configuration that live until exit (100k+ objects once the gateway's or the
sidecar's libraries are imported), so each full pass costs milliseconds and lands on a random
request as tail latency. `gc.freeze()` moves them to a permanent generation the collector no
longer scans; collection itself stays on, so cycles made while serving are still reclaimed.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once, then exempt everything alive now from later collections; how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


__all__ = ["freeze_startup_objects"]
