"""How one request's events for many tasks are applied: rounds that keep each task's order.

Pure. A sidecar's `POST /api/v1/mesh/events` carries runs of FLYs and runs of statuses for
many tasks. Applying each task on its own costs a store transaction and a bus publish per task;
applying them in rounds costs one of each per round: round k holds the k-th run of every task
that has one, so a task's runs still happen in its order, one round after the other, while
different tasks' runs of one round go to the store (statuses) or the bus (FLYs) together.
Usually a request is one round: a task's received and processing, or its FLYs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from asya_mesh.events import Event, FlyEvent, StatusEvent


class Round(msgspec.Struct):
    """At most one run per task: its statuses (one store change) or its FLYs (one publish)."""

    statuses: list[tuple[str, list[StatusEvent]]] = msgspec.field(default_factory=list)
    flys: list[tuple[str, list[FlyEvent]]] = msgspec.field(default_factory=list)


def plan_rounds(batch: Mapping[str, Sequence[Event]]) -> list[Round]:
    """The rounds that apply `batch` (each task's events in order); empty runs never appear."""
    rounds: list[Round] = []
    for task_id, events in batch.items():
        k = -1  # this task's current round
        fly_run: list[FlyEvent] | None = None
        status_run: list[StatusEvent] | None = None
        for event in events:
            if isinstance(event, FlyEvent):
                if fly_run is None:  # a FLY run starts: the task's next round
                    k, status_run, fly_run = k + 1, None, []
                    _round(rounds, k).flys.append((task_id, fly_run))
                fly_run.append(event)
            else:
                if status_run is None:
                    k, fly_run, status_run = k + 1, None, []
                    _round(rounds, k).statuses.append((task_id, status_run))
                status_run.append(event)
    return rounds


def _round(rounds: list[Round], k: int) -> Round:
    if k == len(rounds):
        rounds.append(Round())
    return rounds[k]


__all__ = ["Round", "plan_rounds"]
