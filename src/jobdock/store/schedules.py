"""The SQL of cron schedules: the ``schedules`` table, and firing one.

A fire is one transaction: a conditional UPDATE moves the schedule's next
fire time on (only the process that sees the expected time does it), then
the job is inserted with the fire time in its idempotency key, so that a
fire time makes at most one job however many servers and workers run.

A schedule is named within its owner's: (owner, name) is the key, so one
user's names neither collide with nor reveal another's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update

from jobdock.errors import JobdockError, ScheduleExists, ScheduleNotFound
from jobdock.models import ACTIVE_STATES, ANONYMOUS, JobSpec, Schedule, ScheduleSpec, timestamp
from jobdock.models.records import FirePlan
from jobdock.store import jobs as ops
from jobdock.store.records import UNLOADABLE, unloadable_schedule
from jobdock.store.schema import jobs, schedules
from jobdock.store.statements import announce

_ACTIVE = [s.value for s in ACTIVE_STATES]


def _schedule(row: Row[Any]) -> Schedule:
    try:
        return _load_schedule(row)
    except UNLOADABLE as exc:
        return unloadable_schedule(row, exc)


def _load_schedule(row: Row[Any]) -> Schedule:
    return Schedule(
        name=row.name,
        owner=row.owner,
        cron=row.cron,
        tz=row.tz,
        job=JobSpec.model_validate_json(row.spec),
        overlap=row.overlap,
        catchup=row.catchup,
        paused=bool(row.paused),
        created_at=timestamp(row.created_at),
        next_fire_at=timestamp(row.next_fire_at),
        last_fire_at=timestamp(row.last_fire_at),
        last_job_id=row.last_job_id,
    )


def insert_schedule(
    conn: Connection,
    spec: ScheduleSpec,
    now: float,
    next_fire_at: float | None,
    owner: str = ANONYMOUS,
) -> Schedule:
    if conn.execute(select(schedules.c.name).where(_named(spec.name, owner))).first():
        raise ScheduleExists(spec.name)
    conn.execute(
        insert(schedules).values(
            name=spec.name,
            owner=owner,
            cron=spec.cron,
            tz=spec.tz,
            spec=spec.job.model_dump_json(exclude_defaults=True),
            overlap=spec.overlap,
            catchup=spec.catchup,
            paused=spec.paused,
            created_at=now,
            next_fire_at=next_fire_at,
        )
    )
    # The schedulers of other processes learn its first fire time now.
    announce(conn, "schedules")
    return get_schedule(conn, spec.name, owner)


def _named(name: str, owner: str) -> Any:
    return and_(schedules.c.owner == owner, schedules.c.name == name)


def get_schedule(conn: Connection, name: str, owner: str) -> Schedule:
    row = conn.execute(select(schedules).where(_named(name, owner))).first()
    if row is None:
        raise ScheduleNotFound(name)
    return _schedule(row)


def list_schedules(conn: Connection, owner: str | None = None) -> list[Schedule]:
    query = select(schedules)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    rows = conn.execute(query.order_by(schedules.c.name, schedules.c.owner)).all()
    return [_schedule(row) for row in rows]


def delete_schedule(conn: Connection, name: str, owner: str) -> None:
    if not conn.execute(delete(schedules).where(_named(name, owner))).rowcount:
        raise ScheduleNotFound(name)


def set_paused(
    conn: Connection, name: str, owner: str, paused: bool, next_fire_at: float | None
) -> Schedule:
    """Pause a schedule, or resume it from ``next_fire_at`` (fire times
    missed while paused are not caught up)."""
    values: dict[str, Any] = {"paused": paused}
    if not paused:
        values["next_fire_at"] = next_fire_at
    if not conn.execute(update(schedules).where(_named(name, owner)).values(**values)).rowcount:
        raise ScheduleNotFound(name)
    if not paused:
        announce(conn, "schedules")
    return get_schedule(conn, name, owner)


def due_schedules(conn: Connection, now: float) -> tuple[list[Schedule], list[str]]:
    """Schedules not paused whose next fire time has come; and the names of
    those among them that cannot be loaded (to be paused: see
    :func:`pause_unloadable`)."""
    rows = conn.execute(
        select(schedules).where(
            schedules.c.paused.is_(False),
            schedules.c.next_fire_at.is_not(None),
            schedules.c.next_fire_at <= now,
        )
    ).all()
    loaded = [_schedule(row) for row in rows]
    # One that cannot be loaded is shown paused (see unloadable_schedule).
    return [s for s in loaded if not s.paused], [s.name for s in loaded if s.paused]


def pause_unloadable(conn: Connection, names: list[str]) -> None:
    """Pause schedules whose records cannot be loaded, so that they are not
    due again and again; their owners see them paused and may remove them."""
    conn.execute(update(schedules).where(schedules.c.name.in_(names)).values(paused=True))


def next_fire(conn: Connection) -> float | None:
    """The earliest next fire time of the schedules not paused."""
    value = conn.execute(
        select(func.min(schedules.c.next_fire_at)).where(schedules.c.paused.is_(False))
    ).scalar()
    return None if value is None else float(value)


def fire(conn: Connection, plan: FirePlan, now: float) -> tuple[str | None, str | None]:
    """Carry out one turn of a schedule. Returns the id of the job it made
    (None: another process made it, or the fire was skipped) and the id of a
    running job it asked to stop (overlap ``replace``)."""
    moved = conn.execute(
        update(schedules)
        .where(
            _named(plan.name, plan.owner),
            schedules.c.next_fire_at == plan.expected,
            schedules.c.paused.is_(False),
        )
        .values(next_fire_at=plan.next_fire_at)
    ).rowcount
    if not moved or plan.job is None or plan.fire_at is None:
        return None, None
    row = conn.execute(
        select(schedules.c.overlap, jobs.c.id, jobs.c.state)
        .select_from(schedules)
        .outerjoin(jobs, jobs.c.id == schedules.c.last_job_id)
        .where(_named(plan.name, plan.owner))
    ).one()
    stopped = None
    if row.id is not None and row.state in _ACTIVE:
        if row.overlap == "forbid":
            return None, None
        if row.overlap == "replace":
            try:
                if ops.cancel_job(conn, row.id, now):
                    stopped = row.id
            except JobdockError:  # it ended meanwhile
                pass
    existing = ops.insert_job_once(conn, plan.job)
    job_id = plan.job.id if existing is None else existing.id
    conn.execute(
        update(schedules)
        .where(_named(plan.name, plan.owner))
        .values(last_job_id=job_id, last_fire_at=plan.fire_at)
    )
    return job_id, stopped
