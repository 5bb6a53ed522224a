"""A token streamer for the lossless-text test (imported as tests.sidecar.text_handlers)."""

from __future__ import annotations

from typing import Any


async def tokens(payload: Any) -> Any:
    """payload["n"] text FLYs as fast as possible, then the whole text."""
    parts = [f"t{i} " for i in range(int(payload["n"]))]
    for p in parts:
        yield "FLY", {"partial": True, "text": p}
    yield {"text": "".join(parts)}
