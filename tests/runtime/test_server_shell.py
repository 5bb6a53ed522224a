"""The anyio shell in-process: what it starts (threads) and what it counts."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from asya_runtime.driver import sync_calls_running
from asya_runtime.loader import load_handler
from asya_runtime.server import ServerConfig, serve
from asya_runtime.testing import run_handler

pytestmark = pytest.mark.anyio


async def test_serving_starts_no_worker_thread(short_tmp: Path) -> None:
    """Issue 14: binding used a worker thread that outlived the server by a moment, so the
    CLI said "exiting past 1 worker thread(s)" for a handler that never ran."""
    handler = load_handler("tests.runtime.handlers:SyncClassHandler.handle")
    before = set(threading.enumerate())
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        config = ServerConfig(socket_path=short_tmp / "s.sock")
        path = await tg.start(functools.partial(serve, handler, config, stop=stop))
        assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o666"
        assert set(threading.enumerate()) - before == set()
        stop.set()
    assert not path.exists() and not (short_tmp / "runtime-ready").exists()


def _counting(payload: Any) -> Any:
    return {"running": sync_calls_running()}


def _counting_gen(payload: Any) -> Any:
    yield {"running": sync_calls_running()}


@pytest.mark.parametrize("func", [_counting, _counting_gen])
async def test_sync_calls_running_counts_threads_inside_a_handler(func: Any) -> None:
    frames = await run_handler(func, {})
    assert frames[0].payload == {"running": 1}  # type: ignore[union-attr]
    assert sync_calls_running() == 0


async def test_slots_hand_over_in_order_and_survive_a_cancelled_waiter() -> None:
    from asya_runtime.slots import Slots

    slots = Slots(1)
    await slots.acquire()  # free: no wait
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.acquire()
        order.append(name)
        slots.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a")
        with anyio.CancelScope() as doomed:
            doomed.cancel()
            await slots.acquire()  # cancelled while waiting: must not keep a slot
        tg.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        slots.release()
    assert order == ["a", "b"]
    await slots.acquire()  # the slot came back
