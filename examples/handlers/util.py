"""Small handlers for tests of the runtime, the sidecar and the gateway."""

import asyncio
import time
from pathlib import Path


async def echo(payload):
    """Return the payload unchanged."""
    return payload


async def sleep(payload):
    """Await payload["sleep"] seconds, then return the payload."""
    await asyncio.sleep(float(payload.get("sleep", 0)))
    return payload


async def hang(payload):
    """Await forever; on cancellation the `finally` writes the file payload["marker"]."""
    try:
        await asyncio.Event().wait()
    finally:
        marker = payload.get("marker")
        if marker:
            Path(marker).write_text("finally ran\n")  # noqa: ASYNC240 - sync: we are being cancelled


def block(payload):
    """A sync handler that blocks its thread for payload["sleep"] seconds."""
    time.sleep(float(payload.get("sleep", 1)))
    return payload


async def fly_flood(payload):
    """After payload["sleep"] seconds (if any, like a model call), payload["n"] FLYs as fast
    as possible (each carries its index and a perf_counter_ns stamp), then the payload."""
    if payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    n = int(payload.get("n", 1000))
    now = time.perf_counter_ns
    for i in range(n):
        yield "FLY", {"i": i, "t": now()}
    yield payload
