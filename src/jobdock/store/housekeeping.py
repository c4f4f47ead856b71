"""The periodic sweeps of the store: jobs past their deadlines fail, and
finished jobs past their retention are deleted with their attempts and logs
(what they counted in the metrics goes to the tally, ``store/tally.py``).

Each is one conditional statement per kind of change, safe to run from
several workers at once: a row that another sweep changed first no longer
matches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from jobdock.errors import IllegalTransition, JobNotFound
from jobdock.models import JobState, Reason
from jobdock.store import stdin, tally
from jobdock.store.metrics import runtime
from jobdock.store.schema import attempts, jobs, log_chunks, webhook_deliveries
from jobdock.store.statements import announce

#: At most this many jobs are deleted in one transaction.
PRUNE_BATCH = 500

_WAITING = (JobState.SCHEDULED.value, JobState.QUEUED.value)
_NOT_RUNNING = (*_WAITING, JobState.RETRYING.value)


def _fail(conn: Connection, where: Any, now: float, message: str) -> list[str]:
    rows = conn.execute(
        update(jobs)
        .where(where)
        .values(
            state=JobState.FAILED.value,
            finished_at=now,
            reason=Reason.DEADLINE.value,
            message=message,
            exit_code=None,
            signal=None,
            not_before=None,
        )
        .returning(jobs.c.id)
    ).all()
    return [row.id for row in rows]


def expire_deadlines(conn: Connection, now: float) -> list[str]:
    """Fail the jobs that were not started by their queue deadline, and the
    waiting ones past their total deadline (a running one is stopped by its
    worker). Returns their ids."""
    failed = _fail(
        conn,
        and_(jobs.c.state.in_(_WAITING), jobs.c.attempt == 0, jobs.c.start_by < now),
        now,
        "not started within its queue_timeout",
    )
    failed += _fail(
        conn,
        and_(jobs.c.state.in_(_NOT_RUNNING), jobs.c.finish_by < now),
        now,
        "not finished within its total_timeout",
    )
    if failed:
        announce(conn, *(f"job:{job_id}" for job_id in failed))
    return failed


def prune(
    conn: Connection, now: float, keep_default: float | None, older_than: float | None
) -> int:
    """Delete up to PRUNE_BATCH finished jobs with their attempts and logs:
    those finished more than ``older_than`` seconds ago if it is given, else
    those past their own ``keep_for`` or, without one, ``keep_default``
    (never, if that is None). Returns how many were deleted."""
    # Only finished jobs have a finished_at (index ix_jobs_finished).
    finished = jobs.c.finished_at.is_not(None)
    if older_than is not None:
        expired = jobs.c.finished_at < now - older_than
    elif keep_default is None:
        expired = and_(jobs.c.keep_for.is_not(None), jobs.c.finished_at + jobs.c.keep_for < now)
    else:
        keep = func.coalesce(jobs.c.keep_for, keep_default)
        expired = jobs.c.finished_at + keep < now
    ids = [
        row.id
        for row in conn.execute(
            select(jobs.c.id)
            .where(finished, expired)
            .order_by(jobs.c.finished_at)
            .limit(PRUNE_BATCH)
        )
    ]
    # The streamed stdin of jobs that finished without a worker (cancelled
    # while queued, failed by a deadline or the reaper) goes now.
    stdin.drop_finished(conn)
    if not ids:
        return 0
    return _delete_jobs(conn, ids)


def delete_job(conn: Connection, job_id: str) -> None:
    """Delete one finished job with its attempts and logs (``run --rm``);
    JobNotFound, or IllegalTransition while it has not finished."""
    state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
    if state is None:
        raise JobNotFound(job_id)
    if not JobState(state).terminal:
        raise IllegalTransition(job_id, state, "deleted")
    _delete_jobs(conn, [job_id])


def _delete_jobs(conn: Connection, ids: list[str]) -> int:
    """Delete these jobs (all finished) with their attempts and logs; what
    they counted moves to the tally. Returns how many were deleted."""
    conn.execute(delete(log_chunks).where(log_chunks.c.job_id.in_(ids)))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.job_id.in_(ids)))
    gone_attempts = conn.execute(
        delete(attempts)
        .where(attempts.c.job_id.in_(ids))
        .returning(
            attempts.c.number,
            attempts.c.reason,
            attempts.c.started_at,
            attempts.c.finished_at,
            attempts.c.exit_code,
            attempts.c.signal,
        )
    ).all()
    gone_jobs = conn.execute(
        delete(jobs)
        .where(jobs.c.id.in_(ids))
        .returning(
            jobs.c.state,
            jobs.c.reason,
            runtime(conn).label("runtime"),
            jobs.c.labels,
            jobs.c.created_at,
            jobs.c.started_at,
        )
    ).all()
    # The counters must not go down: what the jobs counted goes to the tally.
    tally.add_deleted(conn, gone_jobs, gone_attempts)
    return len(gone_jobs)
