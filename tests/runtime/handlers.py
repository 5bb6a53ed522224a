"""Handlers used only by the runtime tests (every kind, misuse, typed values)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

NOT_CALLABLE = 42


def sync_gen(payload: Any) -> Any:
    yield "FLY", {"step": 1}
    time.sleep(float(payload.get("sleep", 0)))
    nxt = yield "GET", ".route.next"
    yield "SET", ".headers.seen", nxt
    yield {"got": payload, "next": nxt}


async def async_fn(payload: Any) -> Any:
    await asyncio.sleep(0)
    return {"doubled": payload["x"] * 2}


def sync_fn_none(payload: Any) -> None:
    return None


async def async_none(payload: Any) -> None:
    return None


async def gen_nothing(payload: Any) -> Any:
    if False:
        yield


async def fly_then_sleep(payload: Any) -> Any:
    yield "FLY", {"before": "sleep"}
    await asyncio.sleep(float(payload.get("sleep", 1.0)))
    yield payload


async def mixed(payload: Any) -> Any:
    yield "FLY", {"n": 1}
    yield {"emit": 1}
    yield "FLY", {"n": 2}
    yield "SET", ".route.next", ["z"]
    yield {"emit": 2}
    yield "FLY", {"n": 3}


async def misuse(payload: Any) -> Any:
    yield "FLY", {"ok": True}
    yield "SET", ".id", "forged"


async def bad_verb(payload: Any) -> Any:
    yield "EMIT", {"x": 1}


async def raise_mid_stream(payload: Any) -> Any:
    yield "FLY", {"n": 1}
    yield {"first": True}
    raise KeyError("missing-thing")


def sync_gen_hang(payload: Any) -> Any:
    try:  # the FLY inside: a cancel may close the generator right at that yield
        yield "FLY", {"started": True}
        for _ in range(200):
            time.sleep(0.01)
            yield None
    finally:
        marker = payload.get("marker")
        if marker:
            Path(marker).write_text("closed\n")


async def agen_hang(payload: Any) -> Any:
    try:  # the FLY inside: a cancel may close the generator right at that yield
        yield "FLY", {"started": True}
        await asyncio.Event().wait()
        yield payload
    finally:
        marker = payload.get("marker")
        if marker:
            Path(marker).write_text("closed\n")  # noqa: ASYNC240 - sync: being cancelled


@dataclasses.dataclass
class Result:
    when: datetime.date
    raw: bytes


async def typed(payload: Any) -> Any:
    return Result(datetime.date(2024, 5, 6), b"ok")


async def untyped(payload: Any) -> Any:
    return {"obj": object()}


async def big(payload: Any) -> Any:
    return {"blob": "x" * int(payload["size"])}


class Stateful:
    def __init__(self) -> None:
        self.n = 0

    def handle(self, payload: Any) -> Any:
        self.n += 1
        return {"n": self.n}


class NeedsArgs:
    def __init__(self, model: str) -> None:
        self.model = model

    def handle(self, payload: Any) -> Any:
        return payload


class RaisesInInit:
    def __init__(self) -> None:
        raise RuntimeError("no model")

    def handle(self, payload: Any) -> Any:
        return payload


def _started(payload: Any) -> None:
    """Tell the test this invocation is running: write the file named by payload["started"]."""
    path = payload.get("started") if isinstance(payload, dict) else None
    if path:
        Path(path).write_text("started\n")


async def hang_signalled(payload: Any) -> Any:
    """Signal start, then await forever; on cancellation write payload["marker"]."""
    _started(payload)
    try:
        await asyncio.Event().wait()
    finally:
        marker = payload.get("marker")
        if marker:
            Path(marker).write_text("finally ran\n")  # noqa: ASYNC240 - sync: being cancelled


async def sleep_signalled(payload: Any) -> Any:
    """Signal start, await payload["sleep"] seconds, return the payload."""
    _started(payload)
    await asyncio.sleep(float(payload.get("sleep", 0)))
    return payload


def block_signalled(payload: Any) -> Any:
    """A sync handler: signal start, block the thread payload["sleep"] seconds."""
    _started(payload)
    time.sleep(float(payload.get("sleep", 1)))
    return payload


@dataclasses.dataclass
class Progress:
    done: int
    at: datetime.datetime


async def fly_model(payload: Any) -> Any:
    """Upstream style: a FLY that is a dataclass, and a UTC datetime in the payload."""
    at = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)
    yield "FLY", Progress(1, at)
    yield {"at": at}


class SyncClassHandler:
    """A `Class.method` sync handler (issue 14: a spurious "exiting past" line on SIGTERM)."""

    def handle(self, payload: Any) -> Any:
        return payload


def sync_flood(payload: Any) -> Any:
    """payload["n"] FLYs from a sync generator, then (optionally) one oversized FLY."""
    for i in range(int(payload["n"])):
        yield "FLY", {"i": i}
    if payload.get("big"):
        yield "FLY", {"blob": "x" * int(payload["big"])}
    yield {"done": payload["n"]}
