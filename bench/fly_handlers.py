"""Handlers for bench/fly_bench.py (plain Python, no import from asya)."""

import asyncio
import time


async def steady(payload):
    """payload["n"] FLYs at a steady payload["rate"] per second, each stamped with the
    wall clock (time.time_ns) at the moment of the yield; then the payload."""
    n = int(payload.get("n", 1000))
    rate = float(payload.get("rate", 1000))
    start = time.perf_counter()
    for i in range(n):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        yield "FLY", {"i": i, "t": time.time_ns()}
    yield payload


async def text_flood(payload):
    """payload["n"] text FLYs (`{"partial": true, "text": ...}`) as fast as possible, then
    the whole text."""
    parts = [f"t{i} " for i in range(int(payload.get("n", 1000)))]
    for p in parts:
        yield "FLY", {"partial": True, "text": p}
    yield {"text": "".join(parts)}
