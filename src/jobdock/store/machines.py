"""The SQL of machine pools: the machines the autoscaler started, each
pool's back-off and last decision, and the named leases that let one API
server act at a time (docs/machines.md#pools-and-the-autoscaler).

Every state change of a machine is one conditional UPDATE from the states
that may move to the new one (``models.machines.MACHINE_MOVES``). A row that
cannot be loaded is skipped by the reads and logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from jobdock.models import JobState
from jobdock.models.machines import (
    LIVE_MACHINE_STATES,
    MACHINE_STATES,
    MachineRecord,
    MachineState,
    PoolState,
    moves_into,
)
from jobdock.store.schema import attempts, jobs, leases, machine_pools, machines

_log = logging.getLogger(__name__)

#: The fields a machine's update may change (besides its state).
MACHINE_FIELDS = frozenset(
    {
        "provider_id",
        "token_id",
        "jobs_done",
        "booted_at",
        "last_busy_at",
        "stopping_at",
        "stopped_at",
        "error",
    }
)
#: Ids of rows already reported as unloadable (each is logged once).
_reported: set[str] = set()


def add_machine(conn: Connection, record: MachineRecord) -> None:
    conn.execute(
        insert(machines).values(
            id=record.id,
            pool=record.pool,
            state=record.state,
            provider_id=record.provider_id,
            token_id=record.token_id,
            jobs_done=record.jobs_done,
            requested_at=record.requested_at,
            booted_at=record.booted_at,
            last_busy_at=record.last_busy_at,
            stopping_at=record.stopping_at,
            stopped_at=record.stopped_at,
            error=record.error,
            server=record.server,
        )
    )


def update_machine(
    conn: Connection,
    machine_id: str,
    changes: Mapping[str, object],
    to: MachineState | None,
) -> bool:
    """Change a machine's fields, and move it to ``to`` if given, in one
    conditional write: from a state that may move to ``to``, else from any
    live state. Whether it changed (False: it had moved on)."""
    unknown = set(changes) - MACHINE_FIELDS
    if unknown:
        raise ValueError(f"not a machine field: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(changes)
    sources: tuple[MachineState, ...] = LIVE_MACHINE_STATES
    if to is not None:
        values["state"] = to
        sources = moves_into(to)
    result = conn.execute(
        update(machines)
        .where(machines.c.id == machine_id, machines.c.state.in_(sources))
        .values(**values)
        .returning(machines.c.id)
    ).first()
    return result is not None


def list_machines(conn: Connection, pool: str | None, since: float | None) -> list[MachineRecord]:
    """Live machines, and ended ones that ended at or after ``since`` (none
    without it), newest first."""
    live = machines.c.state.in_(LIVE_MACHINE_STATES)
    query = select(machines)
    if since is None:
        query = query.where(live)
    else:
        query = query.where(or_(live, machines.c.stopped_at >= since))
    if pool is not None:
        query = query.where(machines.c.pool == pool)
    rows = conn.execute(query.order_by(machines.c.requested_at.desc(), machines.c.id)).all()
    loaded = (_machine(row) for row in rows)
    return [record for record in loaded if record is not None]


def _machine(row: Any) -> MachineRecord | None:
    try:
        if row.state not in MACHINE_STATES:
            raise ValueError(f"unknown state {row.state!r}")
        return MachineRecord(
            id=str(row.id),
            pool=str(row.pool),
            state=cast(MachineState, row.state),
            provider_id=_text(row.provider_id),
            token_id=_text(row.token_id),
            jobs_done=int(row.jobs_done),
            requested_at=float(row.requested_at),
            booted_at=_time(row.booted_at),
            last_busy_at=_time(row.last_busy_at),
            stopping_at=_time(row.stopping_at),
            stopped_at=_time(row.stopped_at),
            error=_text(row.error),
            server=_text(row.server),
        )
    except (TypeError, ValueError) as exc:
        _report(f"machine {row.id}", exc)
        return None


def pool_states(conn: Connection) -> list[PoolState]:
    """Every pool's recorded state, by name."""
    rows = conn.execute(select(machine_pools).order_by(machine_pools.c.name)).all()
    loaded = (_pool(row) for row in rows)
    return [state for state in loaded if state is not None]


def _pool(row: Any) -> PoolState | None:
    try:
        return PoolState(
            name=str(row.name),
            failures=int(row.failures),
            backoff_until=_time(row.backoff_until),
            last_error=_text(row.last_error),
            last_decision=_text(row.last_decision),
            decided_at=_time(row.decided_at),
        )
    except (TypeError, ValueError) as exc:
        _report(f"pool {row.name}", exc)
        return None


def record_pool(conn: Connection, state: PoolState) -> None:
    """Create or replace a pool's state."""
    values = {
        "failures": state.failures,
        "backoff_until": state.backoff_until,
        "last_error": state.last_error,
        "last_decision": state.last_decision,
        "decided_at": state.decided_at,
    }
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        make(machine_pools)
        .values(name=state.name, **values)
        .on_conflict_do_update(index_elements=["name"], set_=values)
    )


def take_lease(conn: Connection, name: str, holder: str, now: float, until: float) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``until``: one
    conditional UPDATE that succeeds if ``holder`` has it or it has expired
    (else an insert of a lease nobody had). Whether ``holder`` has it now."""
    renewed = conn.execute(
        update(leases)
        .where(
            leases.c.name == name,
            or_(leases.c.holder == holder, leases.c.expires_at < now),
        )
        .values(holder=holder, expires_at=until)
        .returning(leases.c.name)
    ).first()
    if renewed is not None:
        return True
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    inserted = conn.execute(
        make(leases)
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing()
        .returning(leases.c.name)
    ).first()
    return inserted is not None


def release_lease(conn: Connection, name: str, holder: str) -> None:
    """Give up lease ``name`` if ``holder`` has it."""
    conn.execute(delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder)))


def waiting_requirements(conn: Connection, now: float, limit: int) -> list[dict[str, str]]:
    """The labels required by the jobs that wait for a worker now (queued,
    or scheduled or retrying and due), of those that require any, in claim
    order (highest priority, then oldest), at most ``limit``."""
    due = or_(jobs.c.state == JobState.QUEUED.value, jobs.c.not_before <= now)
    rows = conn.execute(
        select(jobs.c.id, jobs.c.requires)
        .where(jobs.c.requires.is_not(None), due)
        .where(or_(jobs.c.start_by.is_(None), jobs.c.start_by > now))
        .where(
            jobs.c.state.in_(
                [JobState.QUEUED.value, JobState.SCHEDULED.value, JobState.RETRYING.value]
            )
        )
        .order_by(jobs.c.priority.desc(), jobs.c.seq)
        .limit(limit)
    ).all()
    wanted = []
    for row in rows:
        if isinstance(row.requires, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in row.requires.items()
        ):
            wanted.append(dict(row.requires))
        else:
            _report(f"job {row.id}", ValueError("its required labels are not a text mapping"))
    return wanted


def machine_attempts(conn: Connection, prefix: str) -> tuple[int, int, float | None]:
    """How many attempts workers whose id begins with ``prefix`` (a
    machine's agent) claimed in all, how many of them run now, and when the
    last of them ended (None: none has)."""
    # The prefix is a token id's (hex) and fixed text: no LIKE wildcards in it.
    row = conn.execute(
        select(
            func.count(),
            func.count().filter(attempts.c.finished_at.is_(None)),
            func.max(attempts.c.finished_at),
        ).where(attempts.c.worker_id.like(prefix + "%"))
    ).one()
    return int(row[0]), int(row[1]), _time(row[2])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def _report(what: str, exc: BaseException) -> None:
    if what not in _reported and len(_reported) < 10_000:
        _reported.add(what)
        _log.warning("%s cannot be loaded (skipped): %s", what, exc)
