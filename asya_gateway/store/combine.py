"""Group commit: concurrent writes combined into one transaction by whichever caller is first.

A sidecar's `POST /api/v1/mesh/events` carries many tasks' statuses, ingested side by side;
each used to cost the SQLite store its own hop to the worker thread and its own transaction,
and those hops were most of a healthy gateway's CPU per task. `Combiner.submit` queues the
job; the caller that takes the lock runs every job queued by then in one `run_batch` call,
and hands each caller its own outcome. No background task: a batch belongs to the caller
that runs it, and it is shielded, so a canceled leader never loses the others' results.
Every caller still returns only once its own write is committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")
R = TypeVar("R")


class _Job(Generic[T, R]):
    __slots__ = ("done", "item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: R | BaseException | None = None


class Combiner(Generic[T, R]):
    """Runs `run_batch(items)` for up to `max_batch` queued jobs at a time, in arrival order.

    `run_batch` returns one outcome per item, in order; an exception it raises is every
    job's outcome in that batch (e.g. the store is down).
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        max_batch: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self._max = max_batch
        self._queue: list[_Job[T, R]] = []
        self._lock = anyio.Lock()
        self.batches = 0  # for tests and benchmarks: how many batches ran

    async def submit(self, item: T) -> R:
        (outcome,) = await self.submit_many([item])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def submit_many(self, items: list[T]) -> list[R | BaseException]:
        """Every item's outcome, in order (an exception is returned, not raised): queued
        together, so they share batches with each other and with whatever else is queued."""
        jobs: list[_Job[T, R]] = [_Job(item) for item in items]
        self._queue.extend(jobs)
        for job in jobs:
            while not job.done:
                async with self._lock:
                    if not job.done:  # nobody ran it while we waited: we lead the next batch
                        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                        with anyio.CancelScope(shield=True):
                            await self._run(batch)
        return [job.outcome for job in jobs]  # type: ignore[misc]  # all done: R or an error

    async def _run(self, batch: list[_Job[T, R]]) -> None:
        self.batches += 1
        try:
            outcomes = await self._run_batch([j.item for j in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} answered {len(outcomes)} outcomes")
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for j, o in zip(batch, outcomes, strict=True):
            j.outcome, j.done = o, True


__all__ = ["Combiner"]
