"""Handlers only the sidecar tests need (the runtime imports them as tests.sidecar.handlers)."""

from __future__ import annotations

import asyncio
from pathlib import Path
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


async def marked_sleep(payload: Any) -> Any:
    """Writes the file payload["started"] (the test's signal that it runs), then sleeps."""
    Path(payload["started"]).write_text("started\n")  # noqa: ASYNC240 - tiny, once
    await asyncio.sleep(float(payload.get("sleep", 30)))
    return payload


async def pause(payload: Any) -> Any:
    """Pauses its task (front-doors.md "Pause and resume"): one FLY, then the output with
    `x-asya-pause` set."""
    yield "FLY", {"asking": True}
    yield "SET", ".headers.x-asya-pause", {"prompt": "Approve?"}
    yield payload
