"""Workers: registered when they start, noted alive by their heartbeats (see
``store/attempts.py``), unregistered when they stop, and listed with the
jobs they run. Imports the foundation and the schema.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, or_, select, update

from jobdock.models import JobState, WorkerRecord, timestamp
from jobdock.models.records import WorkerInfo
from jobdock.store.schema import jobs, workers

_RUNNING = JobState.RUNNING.value


def register_worker(conn: Connection, info: WorkerInfo) -> None:
    conn.execute(delete(workers).where(workers.c.id == info.id))
    conn.execute(
        insert(workers).values(
            id=info.id,
            host=info.host,
            labels=info.labels,
            concurrency=info.concurrency,
            started_at=info.started_at,
            heartbeat_at=info.started_at,
        )
    )


def unregister_worker(conn: Connection, worker_id: str, now: float) -> None:
    conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=now))


def list_workers(
    conn: Connection, since: float, lost_before: float, owner: str | None = None
) -> list[WorkerRecord]:
    """Workers running now, or stopped (or silent) since ``since``; one whose
    last heartbeat is older than ``lost_before`` is lost. With ``owner``,
    each lists only that owner's running jobs (and counts everyone's)."""
    rows = conn.execute(
        select(workers)
        .where(or_(workers.c.stopped_at.is_(None), workers.c.stopped_at >= since))
        .where(workers.c.heartbeat_at >= since)
        .order_by(workers.c.started_at)
    ).all()
    running: dict[str, list[str]] = {}
    busy: dict[str, int] = {}
    for job_id, worker_id, job_owner in conn.execute(
        select(jobs.c.id, jobs.c.worker_id, jobs.c.owner).where(jobs.c.state == _RUNNING)
    ):
        busy[worker_id] = busy.get(worker_id, 0) + 1
        if owner is None or job_owner == owner:
            running.setdefault(worker_id, []).append(job_id)
    return [
        WorkerRecord(
            id=row.id,
            host=row.host,
            labels=row.labels,
            concurrency=row.concurrency,
            started_at=timestamp(row.started_at),
            heartbeat_at=timestamp(row.heartbeat_at),
            stopped_at=timestamp(row.stopped_at),
            state="stopped"
            if row.stopped_at is not None
            else ("lost" if row.heartbeat_at < lost_before else "alive"),
            running=running.get(row.id, []),
            busy=busy.get(row.id, 0),
        )
        for row in rows
    ]
