"""The start-up freeze: start-up objects leave the collector's walks; collection stays on."""

from __future__ import annotations

import gc

from asya_runtime.gcpolicy import THRESHOLDS, freeze_startup_objects


def test_startup_objects_are_frozen_and_later_cycles_still_collected() -> None:
    before = gc.get_threshold()
    try:
        frozen = freeze_startup_objects()
        assert gc.get_threshold() == THRESHOLDS
        assert frozen > 1000 and frozen == gc.get_freeze_count()  # a test process has plenty
        assert gc.isenabled()

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]  # a cycle made after start-up
        del a, b
        assert gc.collect() >= 2  # still found and reclaimed
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
