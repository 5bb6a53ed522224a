"""Figures of the fault suite: each test records what it tried and what happened, as JSON.

One file per test under `tests/faults/.results/` (gitignored); `render.py` turns them into the
table of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Final

from .knobs import SEED

#: `ASYA_FAULT_RESULTS` moves them (two runs in one checkout would mix their figures).
RESULTS_DIR: Final = Path(
    os.environ.get("ASYA_FAULT_RESULTS") or Path(__file__).resolve().parent / ".results"
)

__all__ = ["RESULTS_DIR", "Recorder"]


class Recorder:
    """Collects one test's figures; `save()` writes them (also when the test failed)."""

    def __init__(self, test_id: str) -> None:
        self.test_id = test_id
        self.started = time.monotonic()
        self.rows: list[dict[str, Any]] = []

    def row(self, area: str, fault: str, tried: int, outcome: str, **details: Any) -> None:
        """One line of the table: `tried` times `fault` in `area` gave `outcome`."""
        self.rows.append(
            {"area": area, "fault": fault, "tried": tried, "outcome": outcome, **details}
        )

    def save(self, passed: bool) -> Path | None:
        if not self.rows:
            return None
        RESULTS_DIR.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.test_id)[-150:]
        path = RESULTS_DIR / f"{name}.json"
        data = {
            "test": self.test_id,
            "passed": passed,
            "seed": SEED,
            "seconds": round(time.monotonic() - self.started, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}",
            "rows": self.rows,
        }
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path
