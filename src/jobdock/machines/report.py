"""What ``GET /v1/machines``, ``jobdock machines`` and the dashboard show of
machine pools: each configured pool with its live machines by state, its
back-off and the autoscaler's last decision, and each machine with the jobs
it runs now and its cost-relevant times (docs/machines.md#watching-machines).

A machine's jobs are those running on the workers of its agent, whose ids
begin with its agent token's prefix (``agent_access.token_prefix``); the
token itself, and its id, are never shown.

Imports the agent-access rules, the store protocol, the pool settings and
the foundation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from jobdock.agent_access import token_prefix
from jobdock.errors import PoolNotFound
from jobdock.models import WorkerRecord, timestamp
from jobdock.models.machines import LIVE_MACHINE_STATES, MachineRecord, MachineState, PoolState
from jobdock.pool_settings import PoolSettings, ProviderKind
from jobdock.store.protocol import Store

#: Workers silent longer than this are not looked at for a machine's jobs.
_WORKERS_SECONDS = 600.0


class PoolReport(BaseModel):
    """A configured pool: its settings, live machines, back-off and last decision."""

    name: str
    provider: ProviderKind
    labels: dict[str, str]
    min: int
    max: int
    capacity: int = Field(description="Jobs at once per machine.")
    max_jobs: int = Field(description="Jobs per machine before it stops; 0: no limit.")
    idle_timeout: float = Field(description="Seconds a machine may idle before it stops.")
    boot_timeout: float = Field(description="Seconds a machine has to register its agent.")
    live: dict[str, int] = Field(
        description="Live machines by state (requested, booting, ready, draining)."
    )
    failures: int = Field(description="Failures in a row (the back-off grows with them).")
    backoff_until: datetime | None = Field(description="No machine starts before this.")
    last_error: str | None
    last_decision: str | None = Field(description="What the autoscaler last decided, one line.")
    decided_at: datetime | None


class MachineReport(BaseModel):
    """One machine of a pool and its life's times."""

    id: str
    pool: str
    state: MachineState
    provider_id: str | None = Field(description="The provider's id (instance, container).")
    jobs: list[str] = Field(description="The ids of the jobs running on it now.")
    jobs_done: int
    requested_at: datetime
    booted_at: datetime | None = Field(description="When its agent registered.")
    boot_seconds: float | None = Field(description="From requested to its agent's registration.")
    last_busy_at: datetime | None
    stopped_at: datetime | None
    machine_seconds: float = Field(description="From requested to stopped (or now, while live).")
    error: str | None


class MachinesReport(BaseModel):
    """``GET /v1/machines``: the pools, then their machines, newest first."""

    pools: list[PoolReport]
    machines: list[MachineReport]


def boot_seconds(machine: MachineRecord) -> float | None:
    """How long it took from requested to its agent's registration (None: it did not)."""
    if machine.booted_at is None:
        return None
    return max(0.0, machine.booted_at - machine.requested_at)


def machine_seconds(machine: MachineRecord, now: float) -> float:
    """How long it has been (or was) held: from requested to stopped, or to
    now while live. An ended machine with no stop time counts to the last
    time recorded of it."""
    if machine.stopped_at is not None:
        end = machine.stopped_at
    elif machine.live:
        end = now
    else:
        known = (machine.booted_at, machine.last_busy_at, machine.stopping_at)
        end = max((t for t in known if t is not None), default=machine.requested_at)
    return max(0.0, end - machine.requested_at)


def check_pool(pools: Sequence[PoolSettings], name: str | None) -> None:
    """PoolNotFound unless ``name`` (if given) is a configured pool."""
    if name is not None and all(pool.name != name for pool in pools):
        raise PoolNotFound(name)


async def machines_report(
    store: Store, pools: Sequence[PoolSettings], pool: str | None, since: float, now: float
) -> MachinesReport:
    """The configured pools (``pool`` alone, if given: PoolNotFound unless it
    is one), their live machines and those ended at or after ``since``."""
    check_pool(pools, pool)
    records = await store.list_machines(pool, since=since)
    states = {state.name: state for state in await store.pool_states()}
    workers = await store.list_workers(now - _WORKERS_SECONDS, now - _WORKERS_SECONDS)
    live = [record for record in records if record.live]
    shown = [settings for settings in pools if pool is None or settings.name == pool]
    return MachinesReport(
        pools=[_pool(settings, states.get(settings.name), live) for settings in shown],
        machines=[_machine(record, workers, now) for record in records],
    )


def _pool(
    settings: PoolSettings, state: PoolState | None, live: Iterable[MachineRecord]
) -> PoolReport:
    counts = dict.fromkeys(LIVE_MACHINE_STATES, 0)
    for record in live:
        if record.pool == settings.name and record.state in counts:
            counts[record.state] += 1
    return PoolReport(
        name=settings.name,
        provider=settings.provider,
        labels=settings.labels,
        min=settings.min,
        max=settings.max,
        capacity=settings.capacity,
        max_jobs=settings.max_jobs,
        idle_timeout=settings.idle_timeout,
        boot_timeout=settings.boot_timeout,
        live=dict(counts),
        failures=state.failures if state else 0,
        backoff_until=timestamp(state.backoff_until) if state else None,
        last_error=state.last_error if state else None,
        last_decision=state.last_decision if state else None,
        decided_at=timestamp(state.decided_at) if state else None,
    )


def _machine(record: MachineRecord, workers: Sequence[WorkerRecord], now: float) -> MachineReport:
    jobs: list[str] = []
    if record.token_id is not None:
        prefix = token_prefix(record.token_id)
        for worker in workers:
            if worker.id.startswith(prefix):
                jobs.extend(worker.running)
    return MachineReport(
        id=record.id,
        pool=record.pool,
        state=record.state,
        provider_id=record.provider_id,
        jobs=sorted(jobs),
        jobs_done=record.jobs_done,
        requested_at=datetime.fromtimestamp(record.requested_at, UTC),
        booted_at=timestamp(record.booted_at),
        boot_seconds=boot_seconds(record),
        last_busy_at=timestamp(record.last_busy_at),
        stopped_at=timestamp(record.stopped_at),
        machine_seconds=machine_seconds(record, now),
        error=record.error,
    )
