"""How many machines each pool needs now: the jobs that wait for a worker,
less those the live workers (agents, embedded and database workers, the
pools' ready machines) have room for, less those the machines already
starting will take (docs/machines.md#pools-and-the-autoscaler).

A job is a pool's if the labels it requires, less the container engine's
(``jobdock.io/container``: a pool's machines are expected to run images),
are not empty and are all among the pool's labels. A job that several
pools could take counts for the first of them in the configuration.

Pure functions of what the autoscaler read; imports the foundation only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobdock.pool_settings import PoolSettings, pool_of


@dataclass(frozen=True)
class Slots:
    """A live worker's room for more jobs, and the labels it offers."""

    labels: Mapping[str, str]
    free: int


@dataclass(frozen=True)
class PoolView:
    """What one pool has now."""

    settings: PoolSettings
    #: Machines requested or booting (not yet registered): each will take
    #: ``capacity`` jobs (at most ``max_jobs``).
    starting: int
    #: Machines not draining, stopped or failed (those ``min`` and ``max`` count).
    live: int


def unmet(waiting: Sequence[Mapping[str, str]], slots: Sequence[Slots]) -> list[Mapping[str, str]]:
    """The required labels of the waiting jobs (in claim order) that no
    live worker has room for, each job given the first worker that can
    take it."""
    room = [slot.free for slot in slots]
    left: list[Mapping[str, str]] = []
    for requires in waiting:
        for index, slot in enumerate(slots):
            if room[index] > 0 and all(slot.labels.get(k) == v for k, v in requires.items()):
                room[index] -= 1
                break
        else:
            left.append(requires)
    return left


def machines_to_start(
    waiting: Sequence[Mapping[str, str]],
    slots: Sequence[Slots],
    pools: Sequence[PoolView],
) -> dict[str, tuple[int, int]]:
    """Per pool: how many machines to start now, and how many of its jobs
    wait unmet. Never more than ``max`` live machines; at least ``min``."""
    settings = [view.settings for view in pools]
    jobs: dict[str, int] = {view.settings.name: 0 for view in pools}
    for requires in unmet(waiting, slots):
        pool = pool_of(requires, settings)
        if pool is not None:
            jobs[pool.name] += 1
    plan: dict[str, tuple[int, int]] = {}
    for view in pools:
        pool = view.settings
        per_machine = pool.capacity if not pool.max_jobs else min(pool.capacity, pool.max_jobs)
        # A machine that is starting will take its share at once.
        uncovered = max(0, jobs[pool.name] - view.starting * per_machine)
        wanted = math.ceil(uncovered / per_machine)
        wanted = max(wanted, pool.min - view.live)
        plan[pool.name] = (max(0, min(wanted, pool.max - view.live)), jobs[pool.name])
    return plan
