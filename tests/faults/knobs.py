"""Trial and example counts, read once from the environment (CI defaults meet issue 6's numbers)."""

from __future__ import annotations

import os
import random
from typing import Final


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


#: kill -9 trials per transport (issue: 100).
TRIALS: Final = _int("ASYA_FAULT_TRIALS", 100)
#: hypothesis examples per fuzz surface (issue: >= 10,000).
FUZZ_EXAMPLES: Final = _int("ASYA_FUZZ_EXAMPLES", 10_000)
#: cases per hypothesis example: hypothesis' per-example overhead dominates otherwise.
FUZZ_BATCH: Final = _int("ASYA_FUZZ_BATCH", 10)
#: hypothesis examples per surface, so that examples x FUZZ_BATCH >= FUZZ_EXAMPLES cases.
FUZZ_RUNS: Final = -(-FUZZ_EXAMPLES // FUZZ_BATCH)
#: envelopes through the 2-actor load pipeline (issue: 10,000).
LOAD_ENVELOPES: Final = _int("ASYA_LOAD_ENVELOPES", 10_000)
#: one seed for every random choice of this run; printed and recorded so a run can be replayed.
SEED: Final = _int("ASYA_FAULT_SEED", random.SystemRandom().randrange(2**31))

__all__ = ["FUZZ_BATCH", "FUZZ_EXAMPLES", "FUZZ_RUNS", "LOAD_ENVELOPES", "SEED", "TRIALS"]
