"""Group commit (`asya_gateway.store.combine.Combiner`): each caller its own outcome, once."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_gateway.store.combine import Combiner

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Recorder:
    """A batch runner that records its batches and can be held open or made to fail."""

    def __init__(self, fail_batches: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.fail_batches = fail_batches
        self.release = anyio.Event()
        self.hold = False
        self.entered = anyio.Event()

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        self.entered.set()
        if self.hold:
            await self.release.wait()
        await anyio.lowlevel.checkpoint()  # a real store yields to the thread
        if len(self.batches) - 1 in self.fail_batches:
            raise OSError("disk gone")
        return [ValueError(f"odd {i}") if i % 7 == 6 else i * 10 for i in items]


async def test_callers_queued_behind_a_running_batch_share_the_next_one() -> None:
    rec = Recorder()
    rec.hold = True
    comb: Combiner[int, int] = Combiner(rec)
    got: dict[int, int] = {}

    async def one(i: int) -> None:
        got[i] = await comb.submit(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        await rec.entered.wait()  # 0 leads a batch of one, held open
        for i in range(1, 6):
            tg.start_soon(one, i)
        await anyio.wait_all_tasks_blocked()
        rec.hold = False
        rec.release.set()
    assert got == {i: i * 10 for i in range(6)}
    assert rec.batches == [[0], [1, 2, 3, 4, 5]]  # in arrival order, one batch for the rest


async def test_a_job_that_fails_fails_alone_and_a_failed_batch_fails_its_jobs_only() -> None:
    rec = Recorder(fail_batches=frozenset({1}))
    comb: Combiner[int, int] = Combiner(rec)
    with pytest.raises(ValueError, match="odd 6"):
        await comb.submit(6)  # batch 0: the job's own error
    with pytest.raises(OSError, match="disk gone"):
        await comb.submit(1)  # batch 1: the whole batch failed
    assert await comb.submit(2) == 20  # and the next one works


async def test_a_canceled_leader_still_completes_the_batch_for_the_others() -> None:
    gates = [anyio.Event(), anyio.Event()]
    entered = [anyio.Event(), anyio.Event()]
    batches: list[list[int]] = []

    async def held(items: list[int]) -> list[int]:
        k = len(batches)
        batches.append(items)
        entered[k].set()
        await gates[k].wait()
        return [i * 10 for i in items]

    comb: Combiner[int, int] = Combiner(held)
    got: dict[int, int] = {}
    leader = anyio.CancelScope()

    async def submit(i: int, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            got[i] = await comb.submit(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 0)
        await entered[0].wait()  # batch [0] runs; 1 and 2 queue behind it
        tg.start_soon(submit, 1, leader)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(submit, 2)
        await anyio.wait_all_tasks_blocked()
        gates[0].set()
        await entered[1].wait()  # 1 leads batch [1, 2]
        leader.cancel()  # the leader is canceled mid-batch
        await anyio.wait_all_tasks_blocked()
        gates[1].set()
    assert batches == [[0], [1, 2]]
    assert got[0] == 0 and got[2] == 20  # the follower's result was not lost


async def test_run_batch_answering_the_wrong_number_of_outcomes_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return []

    comb: Combiner[int, int] = Combiner(short)
    with pytest.raises(RuntimeError, match="batch of 1 answered 0 outcomes"):
        await comb.submit(1)
    with pytest.raises(ValueError, match="max_batch"):
        Combiner(short, max_batch=0)


@settings(max_examples=60)
@given(
    waves=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6),
    max_batch=st.integers(min_value=1, max_value=5),
)
def test_every_job_runs_exactly_once_in_bounded_batches(waves: list[int], max_batch: int) -> None:
    async def run() -> None:
        rec = Recorder()
        comb: Combiner[int, int] = Combiner(rec, max_batch=max_batch)
        outcomes: dict[int, object] = {}

        async def one(i: int) -> None:
            try:
                outcomes[i] = await comb.submit(i)
            except ValueError as exc:
                outcomes[i] = str(exc)

        n = 0
        async with anyio.create_task_group() as tg:
            for size in waves:  # callers arrive in waves, some while a batch runs
                for _ in range(size):
                    tg.start_soon(one, n)
                    n += 1
                await anyio.lowlevel.checkpoint()
        ran = [i for b in rec.batches for i in b]
        assert sorted(ran) == list(range(n))  # each job run exactly once
        assert all(1 <= len(b) <= max_batch for b in rec.batches)
        assert outcomes == {i: (f"odd {i}" if i % 7 == 6 else i * 10) for i in range(n)}
        assert comb.batches == len(rec.batches)

    anyio.run(run)


async def test_submit_many_answers_each_item_in_order_and_shares_one_batch() -> None:
    rec = Recorder()
    c: Combiner[int, int] = Combiner(rec, max_batch=64)
    out = await c.submit_many([1, 6, 3])
    assert rec.batches == [[1, 6, 3]]  # one batch for the whole request, not one per item
    assert out[0] == 10 and out[2] == 30
    assert isinstance(out[1], ValueError) and str(out[1]) == "odd 6"  # returned, not raised


async def test_submit_many_beyond_max_batch_takes_several_batches_in_order() -> None:
    rec = Recorder()
    c: Combiner[int, int] = Combiner(rec, max_batch=2)
    out = await c.submit_many([0, 1, 2, 3, 4])
    assert rec.batches == [[0, 1], [2, 3], [4]]
    assert out == [0, 10, 20, 30, 40]


async def test_submit_many_returns_a_store_failure_as_every_outcome() -> None:
    rec = Recorder(fail_batches=frozenset({0}))
    c: Combiner[int, int] = Combiner(rec)
    out = await c.submit_many([1, 2])
    assert all(isinstance(o, OSError) and str(o) == "disk gone" for o in out)
