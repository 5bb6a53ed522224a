"""Handlers the fault suite runs in real runtimes: each leaves a trace a test can read.

The trace file (`$ASYA_FAULT_TRACE`, one line per step, appended with O_APPEND) lets a test
tell which point of processing a kill hit without any help from the sidecar.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

__all__ = [
    "block_loop",
    "echo",
    "fanout_stream",
    "fly_burst",
    "fly_step",
    "hang_async",
    "hang_sync",
    "inflate",
    "long_stream",
    "pipeline_step",
]


def _trace(step: str, envelope_id: Any) -> None:
    path = os.environ.get("ASYA_FAULT_TRACE")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{step} {envelope_id} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def echo(payload: Any) -> Any:
    """The trivial handler: the payload, unchanged."""
    return payload


async def pipeline_step(payload: Any) -> Any:
    """A trivial async step of a pipeline: count the hops."""
    if isinstance(payload, dict):
        return {**payload, "hops": int(payload.get("hops", 0)) + 1}
    return payload


async def fly_step(payload: Any) -> AsyncIterator[Any]:
    """One FLY, then the payload with one more hop counted (a load pipeline's step)."""
    yield ("FLY", {"partial": True, "text": "step"})
    if isinstance(payload, dict):
        payload = {**payload, "hops": int(payload.get("hops", 0)) + 1}
    yield payload


def inflate(payload: Any) -> Any:
    """A small input, a big output: `{"bytes": n}` -> n characters that do not compress."""
    n = int(payload.get("bytes", 0)) if isinstance(payload, dict) else 0
    return {"blob": base64.b64encode(os.urandom(n))[:n].decode()}


async def fanout_stream(payload: Any) -> AsyncIterator[Any]:
    """FLY, emit #0, emit #1, with pauses between, each step traced (kill points to hit)."""
    envelope_id = yield ("GET", ".id")
    pause = float(payload.get("pause", 0.05)) if isinstance(payload, dict) else 0.05
    _trace("S", envelope_id)
    yield ("FLY", {"partial": True, "text": "working"})
    await anyio.sleep(pause)
    _trace("E0", envelope_id)
    yield {"part": 0, "input": payload}
    await anyio.sleep(pause)
    _trace("E1", envelope_id)
    yield {"part": 1, "input": payload}
    await anyio.sleep(pause)
    _trace("R", envelope_id)


async def long_stream(payload: Any) -> AsyncIterator[Any]:
    """Stream FLYs for a long time (a runtime kill lands mid-stream)."""
    envelope_id = yield ("GET", ".id")
    _trace("S", envelope_id)
    for i in range(10_000):
        yield ("FLY", {"partial": True, "i": i})
        await anyio.sleep(0.01)
    yield payload


async def fly_burst(payload: Any) -> AsyncIterator[Any]:
    """Yield `n` FLYs as fast as possible, then the payload (gateway trouble must not block it)."""
    n = int(payload.get("n", 50)) if isinstance(payload, dict) else 50
    for i in range(n):
        yield ("FLY", {"partial": True, "i": i})
    yield payload


async def hang_async(payload: Any) -> Any:
    """Never returns, but can be cancelled."""
    envelope_id = payload.get("id") if isinstance(payload, dict) else None
    _trace("S", envelope_id)
    try:
        await anyio.sleep_forever()
    finally:
        _trace("C", envelope_id)  # cancellation ran our finally


def hang_sync(payload: Any) -> Any:
    """A sync handler stuck in a loop no cancel can interrupt (it sleeps in short slices)."""
    envelope_id = payload.get("id") if isinstance(payload, dict) else None
    _trace("S", envelope_id)
    seconds = float(payload.get("seconds", 3600)) if isinstance(payload, dict) else 3600.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return payload


async def block_loop(payload: Any) -> Any:
    """An `async def` that blocks its event loop (time.sleep): no cancel can reach it."""
    envelope_id = payload.get("id") if isinstance(payload, dict) else None
    _trace("S", envelope_id)
    seconds = float(payload.get("seconds", 3600)) if isinstance(payload, dict) else 3600.0
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    return payload
