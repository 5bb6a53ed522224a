"""Handlers only the sidecar tests need (the runtime imports them as tests.sidecar.handlers)."""

from __future__ import annotations

import asyncio
from typing import Any


async def stubborn(payload: Any) -> Any:
    """Swallows cancellation: the runtime can never answer `end` after a `cancel`."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def sized(payload: Any) -> Any:
    """One output per entry of payload["sizes"], each carrying a blob of that many bytes."""
    for size in payload["sizes"]:
        yield {"blob": "x" * size}
