"""Attempts after their claim: started, finished (or retrying), kept alive by
heartbeats, given back, and lost when their lease expires (the reaper).

Every write names the attempt (the fencing token) and the state it
expects, and raises FencedOff (or changes nothing) when the attempt no
longer holds its job. Imports the foundation, the retry policy
(jobdock.retry), the schema and statements.py.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, exists, func, select, update

from jobdock.errors import FencedOff
from jobdock.models import JobState, Reason
from jobdock.models.outcome import Outcome
from jobdock.models.records import HeartbeatReply, LostAttempt, Started
from jobdock.retry import retry_at
from jobdock.store.prepared import Prepared
from jobdock.store.records import load_spec
from jobdock.store.schema import attempts, jobs, workers
from jobdock.store.statements import announce, held, param

_RUNNING = JobState.RUNNING.value
_RESULT = ("finished_at", "exit_code", "signal", "reason", "message")

_START_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(held())
        .values(started_at=func.coalesce(jobs.c.started_at, param("started_at")))
    )
)
_START_ATTEMPT = Prepared(
    lambda _: (
        update(attempts)
        .where(attempts.c.job_id == param("job_id"), attempts.c.number == param("attempt"))
        .values(
            pid=param("pid"),
            pid_start=param("pid_start"),
            host=param("host"),
            started_at=param("at"),
            inputs=param("inputs"),
        )
    )
)


class _JobAndAttempt:
    """The UPDATE of a running job and of its attempt; FencedOff if the job
    is not held by that attempt. On PostgreSQL the two are one statement (a
    CTE), so one round trip; the attempt changes only if the job did."""

    def __init__(self, job: Prepared, attempt: Prepared) -> None:
        self._job = job
        self._attempt = attempt

        def both(dialect: str) -> Any:
            changed = job.build(dialect).returning(jobs.c.id).cte("changed")
            return attempt.build(dialect).where(exists(select(changed.c.id)))

        self._both = Prepared(both)

    def run(self, conn: Connection, **params: Any) -> None:
        if conn.dialect.name == "postgresql":
            done = self._both.run(conn, **params).rowcount
        else:
            done = self._job.run(conn, **params).rowcount
            if done:
                self._attempt.run(conn, **params)
        if not done:
            raise FencedOff(params["job_id"], params["attempt"])


_START = _JobAndAttempt(_START_JOB, _START_ATTEMPT)


def mark_started(conn: Connection, job_id: str, attempt: int, started: Started) -> None:
    _START.run(
        conn,
        job_id=job_id,
        attempt=attempt,
        started_at=started.started_at,
        pid=started.pid,
        pid_start=started.pid_start,
        host=started.host,
        at=started.started_at,
        inputs=None if started.inputs is None else json.dumps(started.inputs),
    )
    announce(conn, f"job:{job_id}")


_NOTE_JOB = Prepared(lambda _: update(jobs).where(held()).values(attempt=jobs.c.attempt))
_NOTE_ATTEMPT = Prepared(
    lambda _: (
        update(attempts)
        .where(attempts.c.job_id == param("job_id"), attempts.c.number == param("attempt"))
        .values(engine_job=param("engine_job"), engine_state=param("engine_state"))
    )
)
_NOTE = _JobAndAttempt(_NOTE_JOB, _NOTE_ATTEMPT)


def note_engine(
    conn: Connection, job_id: str, attempt: int, engine_job: str, engine_state: str
) -> None:
    _NOTE.run(
        conn,
        job_id=job_id,
        attempt=attempt,
        engine_job=engine_job[:64],
        engine_state=engine_state[:255],
    )
    announce(conn, f"job:{job_id}")


#: What a finished attempt records besides its result.
_ACCOUNTING = ("stdout_bytes", "stderr_bytes", "isolation", "limits", "peak_memory", "cpu_seconds")

_FINISH_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(held())
        .values(
            {name: param(name) for name in (*_RESULT, "state")}
            | {"worker_id": None, "lease_expires_at": None}
        )
    )
)
_FINISH_ATTEMPT = Prepared(
    lambda _: (
        update(attempts)
        .where(attempts.c.job_id == param("job_id"), attempts.c.number == param("attempt"))
        .values({name: param(name) for name in (*_RESULT, *_ACCOUNTING)})
    )
)


_FINISH = _JobAndAttempt(_FINISH_JOB, _FINISH_ATTEMPT)
#: A failed attempt whose job is run again: retrying until ``not_before``.
_RETRY_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(held())
        .values(
            {name: param(name) for name in ("exit_code", "signal", "reason", "message", "state")}
            | {
                "not_before": param("next_attempt_at"),
                "failures": jobs.c.failures + 1,
                "worker_id": None,
                "lease_expires_at": None,
            }
        )
    )
)
_RETRY = _JobAndAttempt(_RETRY_JOB, _FINISH_ATTEMPT)


def finish_attempt(conn: Connection, job_id: str, attempt: int, outcome: Outcome) -> bool:
    """Record the attempt's end; whether a job may have become claimable by
    it (it retries, or it freed a slot or a key that a queued job may
    want), so that the claim loops look at once."""
    retrying = outcome.state is JobState.RETRYING
    (_RETRY if retrying else _FINISH).run(
        conn,
        next_attempt_at=outcome.next_attempt_at,
        job_id=job_id,
        attempt=attempt,
        state=outcome.state.value,
        finished_at=outcome.finished_at,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        reason=outcome.reason.value,
        message=outcome.message,
        stdout_bytes=outcome.stdout_bytes,
        stderr_bytes=outcome.stderr_bytes,
        isolation=outcome.isolation,
        limits=None if outcome.limits is None else json.dumps(outcome.limits),
        peak_memory=outcome.peak_memory,
        cpu_seconds=outcome.cpu_seconds,
    )
    waiting = retrying or _ANY_QUEUED.run(conn).first() is not None
    announce(conn, f"job:{job_id}", *(["work"] if waiting else []))
    return waiting


#: Whether any job is queued (ix_jobs_state_seq).
_ANY_QUEUED = Prepared(
    lambda _: select(jobs.c.seq).where(jobs.c.state == JobState.QUEUED.value).limit(1)
)

_BEAT = Prepared(
    lambda _: (
        update(workers).where(workers.c.id == param("worker_id")).values(heartbeat_at=param("now"))
    )
)


def heartbeat(
    conn: Connection, worker_id: str, running: dict[str, int], lease_until: float, now: float
) -> HeartbeatReply:
    """Renew the leases of the attempts the worker says it runs. Only those:
    an attempt the store has under this worker that the worker does not know
    (its task failed) keeps its lease no longer; when it expires the reaper
    ends it (cancelled, if a cancel was asked for)."""
    _BEAT.run(conn, worker_id=worker_id, now=now)
    rows = conn.execute(
        update(jobs)
        .where(
            jobs.c.worker_id == worker_id,
            jobs.c.state == _RUNNING,
            jobs.c.id.in_(list(running)),
        )
        .values(lease_expires_at=lease_until)
        .returning(jobs.c.id, jobs.c.attempt, jobs.c.cancel_requested, jobs.c.kill_requested)
    ).all()
    held = {(row.id, row.attempt) for row in rows}
    return HeartbeatReply(
        lost=frozenset(job for job, number in running.items() if (job, number) not in held),
        cancel=frozenset(row.id for row in rows if row.cancel_requested),
        kill=frozenset(row.id for row in rows if row.kill_requested),
    )


def lose_attempt(
    conn: Connection,
    job_id: str,
    attempt: int,
    message: str,
    now: float,
    max_lost: int | None,
    expired_only: bool,
    reason: Reason = Reason.WORKER_LOST,
) -> JobState | None:
    """Record an attempt as worker_lost (or ``reason``, e.g. interrupted) and
    requeue or fail its job.

    ``max_lost`` None means the loss is not the job's fault (a clean release,
    an interruption) and counts against neither ``max_lost`` nor the retries.
    Returns the job's new state, or None if the attempt was no longer running.
    """
    holds = and_(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == _RUNNING)
    row = conn.execute(select(*_LOSS_COLUMNS).where(holds)).first()
    if row is None:
        return None
    new_state, values = _after_loss(row, message, now, max_lost)
    if values.get("reason") == Reason.WORKER_LOST.value:
        values["reason"] = reason.value
    if expired_only:
        holds = and_(holds, jobs.c.lease_expires_at < now)
    if not conn.execute(update(jobs).where(holds).values(**values)).rowcount:
        return None
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(finished_at=now, reason=reason.value, message=message)
    )
    # Requeued, retrying or failed, it no longer holds its slot or key.
    announce(conn, f"job:{job_id}", "work")
    return new_state


#: What deciding a lost attempt's fate reads of its job.
_LOSS_COLUMNS = (
    jobs.c.on_worker_lost,
    jobs.c.lost_count,
    jobs.c.cancel_requested,
    jobs.c.spec,
    jobs.c.failures,
    jobs.c.finish_by,
)


def _after_loss(
    row: Any, message: str, now: float, max_lost: int | None
) -> tuple[JobState, dict[str, Any]]:
    """What losing its attempt makes of a job: its new state, and the
    values of its row."""
    lost_count = row.lost_count + (0 if max_lost is None else 1)
    new_state, reason, retrying = _state_after_loss(row, now, max_lost, lost_count)
    values: dict[str, Any] = {"worker_id": None, "lease_expires_at": None, **retrying}
    values.update(state=new_state.value, lost_count=lost_count)
    if new_state.terminal:
        values.update(finished_at=now, reason=reason.value if reason else None, message=message)
    else:
        # A requeued job says why it is waiting again.
        values["message"] = message
    return new_state, values


def _state_after_loss(
    row: Any, now: float, max_lost: int | None, lost_count: int
) -> tuple[JobState, Reason | None, dict[str, Any]]:
    """The job's next state and reason after a lost attempt, with the
    columns of its retry if it is retried."""
    spec = load_spec(row.spec)
    retry = None if isinstance(spec, str) else spec.retry
    if row.cancel_requested:
        return JobState.CANCELLED, Reason.CANCELLED, {}
    if retry is not None and retry.count_worker_lost and max_lost is not None:
        # The loss spends the retry budget, whatever the policy's on_reasons.
        at = retry_at(retry, row.failures, now, row.finish_by)
        if at is not None and row.on_worker_lost == "requeue":
            return JobState.RETRYING, None, {"not_before": at, "failures": row.failures + 1}
        return JobState.FAILED, Reason.WORKER_LOST, {}
    if row.on_worker_lost == "requeue" and (max_lost is None or lost_count <= max_lost):
        return JobState.QUEUED, None, {}
    return JobState.FAILED, Reason.WORKER_LOST, {}


def reap_expired(conn: Connection, now: float, max_lost: int) -> list[LostAttempt]:
    rows = conn.execute(
        select(jobs.c.id, jobs.c.attempt, attempts.c.host, attempts.c.pid, attempts.c.pid_start)
        .join(
            attempts,
            and_(attempts.c.job_id == jobs.c.id, attempts.c.number == jobs.c.attempt),
        )
        .where(jobs.c.state == _RUNNING, jobs.c.lease_expires_at < now)
    ).all()
    lost = []
    for row in rows:
        message = f"the worker running attempt {row.attempt} stopped renewing its lease"
        state = lose_attempt(conn, row.id, row.attempt, message, now, max_lost, True)
        if state is not None:
            lost.append(LostAttempt(row.id, row.attempt, row.host, row.pid, row.pid_start, state))
    return lost


def lost_processes(conn: Connection, host: str, since: float) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of the attempts on ``host`` lost (or handed back
    interrupted) since ``since``."""
    rows = conn.execute(
        select(attempts.c.pid, attempts.c.pid_start).where(
            attempts.c.host == host,
            attempts.c.reason.in_([Reason.WORKER_LOST.value, Reason.INTERRUPTED.value]),
            attempts.c.finished_at >= since,
            attempts.c.pid.is_not(None),
        )
    ).all()
    return [(row.pid, row.pid_start) for row in rows]
