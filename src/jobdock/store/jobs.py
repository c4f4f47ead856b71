"""Jobs: storing a new one (once per idempotency key), reading and listing
them, and cancelling one.

Like every operation module of the store, one function per operation on a
SQLAlchemy ``Connection`` inside a transaction, so one copy of the SQL
serves every database. Every state change is one conditional ``UPDATE``.
Imports the foundation, the schema and the store's shared pieces
(statements.py, access.py for the audit record); cancelling a running job
no live worker holds ends its attempt through attempts.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from jobdock.errors import IllegalTransition, JobNotFound
from jobdock.models import (
    STREAM_NUMBERS,
    Attempt,
    Job,
    JobPage,
    JobSpec,
    JobState,
    Reason,
    Stream,
    sources_of,
    timestamp,
)
from jobdock.models.jobs import container_name
from jobdock.models.records import NewJob
from jobdock.store.access import record
from jobdock.store.attempts import lose_attempt
from jobdock.store.prepared import Prepared
from jobdock.store.records import UNLOADABLE, unloadable_job
from jobdock.store.schema import IDEMPOTENT, attempts, jobs, log_chunks
from jobdock.store.statements import announce, param

_RUNNING = JobState.RUNNING.value
_RETRYING = JobState.RETRYING.value
_CANCELLABLE = [s.value for s in sources_of(JobState.CANCELLED) if s != JobState.RUNNING]
_HIDDEN = ("stdin", "lease_expires_at", "lost_count", "requires", "traceparent", "hooks_due")
_JOB_COLUMNS = [c for c in jobs.c if c.name not in _HIDDEN]

#: The columns a spec's scheduling fields set (see :func:`scheduling_values`).
_SCHEDULING = (
    "state",
    "priority",
    "not_before",
    "idempotency_key",
    "concurrency_key",
    "concurrency_limit",
    "start_by",
    "finish_by",
    "keep_for",
)
_INSERT_NAMES = (
    "id",
    "name",
    "spec",
    "labels",
    "stdin",
    "stdin_bytes",
    "on_worker_lost",
    "created_at",
    "requires",
    "owner",
    "trace_id",
    "traceparent",
    "hooks_due",
    *_SCHEDULING,
)
_INSERT_FIXED = {
    "attempt": 0,
    "cancel_requested": False,
    "kill_requested": False,
    "lost_count": 0,
    "failures": 0,
}
_INSERT_JOB = Prepared(
    lambda _: insert(jobs).values({name: param(name) for name in _INSERT_NAMES} | _INSERT_FIXED)
)


def initial_state(job: NewJob) -> JobState:
    """``scheduled`` for a job whose run_at is still ahead, else ``queued``."""
    run_at = job.spec.run_at
    if run_at is not None and run_at.timestamp() > job.created_at:
        return JobState.SCHEDULED
    return JobState.QUEUED


def scheduling_values(job: NewJob) -> dict[str, Any]:
    """The scheduling columns of a new job; its deadlines count from when it is due."""
    spec = job.spec
    state = initial_state(job)
    due = spec.run_at.timestamp() if spec.run_at is not None else job.created_at
    due = max(due, job.created_at)
    return {
        "state": state.value,
        "priority": spec.priority,
        "not_before": due if state is JobState.SCHEDULED else None,
        "idempotency_key": spec.idempotency_key,
        "concurrency_key": spec.concurrency_key,
        "concurrency_limit": spec.concurrency_limit,
        "start_by": None if spec.queue_timeout is None else due + spec.queue_timeout,
        "finish_by": None if spec.total_timeout is None else due + spec.total_timeout,
        "keep_for": spec.keep_for,
    }


def _insert_values(job: NewJob) -> dict[str, Any]:
    spec = job.spec
    requires = spec.requirements()
    return {
        "id": job.id,
        "name": spec.name,
        "spec": spec.without_stdin().model_dump_json(exclude_defaults=True),
        "labels": json.dumps(spec.labels),
        "stdin": job.stdin or None,
        "stdin_bytes": len(job.stdin),
        "on_worker_lost": spec.on_worker_lost,
        "created_at": job.created_at,
        "requires": json.dumps(requires) if requires else None,
        "owner": job.owner,
        "trace_id": job.trace_id,
        "traceparent": job.traceparent,
        # Owed once the job ends (webhooks.py delivers them).
        "hooks_due": 0.0 if spec.webhooks else None,
        **scheduling_values(job),
    }


def _insert_once_statement(dialect: str) -> Any:
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(jobs).values({name: param(name) for name in _INSERT_NAMES} | _INSERT_FIXED)
    return statement.on_conflict_do_nothing(
        index_elements=["owner", "idempotency_key"], index_where=IDEMPOTENT
    )


_INSERT_ONCE = Prepared(_insert_once_statement)
_GET_BY_KEY = Prepared(
    lambda _: select(jobs.c.id).where(
        jobs.c.owner == param("owner"), jobs.c.idempotency_key == param("key")
    )
)


def insert_job_once(conn: Connection, job: NewJob) -> Job | None:
    """Insert a job with an idempotency key, unless its owner has a job with
    that key: then return that job. A key is the owner's own: another owner's
    job with the same key is neither returned nor in the way. Concurrent
    duplicates are settled by the unique index on (owner, key): the loser's
    insert does nothing and reads the winner's."""
    if _INSERT_ONCE.run(conn, **_insert_values(job)).rowcount:
        _inserted(conn, job)
        return None
    existing = _GET_BY_KEY.run(conn, owner=job.owner, key=job.spec.idempotency_key).first()
    if existing is None:  # deleted in between (pruned): a new job after all
        return insert_job_once(conn, job)
    return get_job(conn, existing.id)


def insert_job(conn: Connection, job: NewJob) -> None:
    _INSERT_JOB.run(conn, **_insert_values(job))
    _inserted(conn, job)


def created_record(job: NewJob) -> Job:
    """The record of a job just inserted, as a read would give it back."""
    spec = job.spec
    return Job(
        id=job.id,
        name=spec.name,
        owner=job.owner,
        state=initial_state(job),
        labels=spec.labels,
        spec=spec.without_stdin(),
        stdin_bytes=len(job.stdin),
        created_at=timestamp(job.created_at),
        trace_id=job.trace_id,
    )


def insert_jobs(conn: Connection, new: Sequence[NewJob]) -> list[Job | None]:
    """Insert jobs in order (in the caller's one transaction); for each, None
    when inserted, or the job its idempotency key already has."""
    found: list[Job | None] = []
    for job in new:
        if job.spec.idempotency_key is None:
            insert_job(conn, job)
            found.append(None)
        else:
            found.append(insert_job_once(conn, job))
    return found


def _inserted(conn: Connection, job: NewJob) -> None:
    record(conn, job.created_at, job.owner, "submit", job.id)
    announce(conn, "work")


def _job_from_row(row: Row[Any], attempt_rows: Sequence[Row[Any]] = ()) -> Job:
    try:
        return _load_job(row, attempt_rows)
    except UNLOADABLE as exc:
        # One bad record must not fail every list and the health check.
        return unloadable_job(row, exc)


def _load_job(row: Row[Any], attempt_rows: Sequence[Row[Any]]) -> Job:
    labels = row.labels
    spec = JobSpec.model_validate_json(row.spec)
    return Job(
        id=row.id,
        name=row.name,
        owner=row.owner,
        state=JobState(row.state),
        labels=json.loads(labels) if isinstance(labels, str) else labels,
        spec=spec,
        stdin_bytes=row.stdin_bytes,
        created_at=timestamp(row.created_at),
        started_at=timestamp(row.started_at),
        finished_at=timestamp(row.finished_at),
        exit_code=row.exit_code,
        signal=row.signal,
        reason=Reason(row.reason) if row.reason else None,
        message=row.message,
        attempt=row.attempt,
        cancel_requested=bool(row.cancel_requested),
        trace_id=row.trace_id,
        next_attempt_at=timestamp(row.not_before) if row.state == _RETRYING else None,
        attempts=[
            Attempt(
                number=a.number,
                worker=a.worker_id,
                pid=a.pid,
                started_at=timestamp(a.started_at),
                finished_at=timestamp(a.finished_at),
                exit_code=a.exit_code,
                signal=a.signal,
                reason=Reason(a.reason) if a.reason else None,
                message=a.message,
                stdout_bytes=a.stdout_bytes,
                stderr_bytes=a.stderr_bytes,
                isolation=a.isolation,
                container=container_name(row.id, a.number) if spec.image else None,
                limits=json.loads(a.limits) if isinstance(a.limits, str) else a.limits,
                peak_memory=a.peak_memory,
                cpu_seconds=a.cpu_seconds,
                inputs=json.loads(a.inputs) if isinstance(a.inputs, str) else a.inputs,
                engine_job=a.engine_job,
                engine_state=a.engine_state,
            )
            for a in attempt_rows
        ],
    )


_GET_JOB = Prepared(lambda _: select(*_JOB_COLUMNS).where(jobs.c.id == param("job_id")))
_GET_ATTEMPTS = Prepared(
    lambda _: (
        select(attempts).where(attempts.c.job_id == param("job_id")).order_by(attempts.c.number)
    )
)


def get_job(conn: Connection, job_id: str) -> Job:
    row = _GET_JOB.run(conn, job_id=job_id).first()
    if row is None:
        raise JobNotFound(job_id)
    job = _job_from_row(row, _GET_ATTEMPTS.run(conn, job_id=job_id).all())
    for attempt in job.attempts:
        if attempt.finished_at is None:
            attempt.stdout_bytes, attempt.stderr_bytes = _output_so_far(
                conn, job_id, attempt.number
            )
    return job


def _output_so_far(conn: Connection, job_id: str, attempt: int) -> tuple[int, int]:
    """The bytes of stdout and stderr a running attempt has stored: the end
    offset of each stream's last chunk, two lookups in ix_log_chunks_stream
    (the attempt's row is written only when it ends)."""

    def end_of(stream: Stream) -> Any:
        return (
            select(func.coalesce(func.max(log_chunks.c.end_offset), 0))
            .where(
                log_chunks.c.job_id == job_id,
                log_chunks.c.attempt == attempt,
                log_chunks.c.stream == STREAM_NUMBERS[stream],
            )
            .scalar_subquery()
        )

    row = conn.execute(select(end_of(Stream.STDOUT), end_of(Stream.STDERR))).one()
    return int(row[0]), int(row[1])


#: The shortest id prefix that refers to a job (as git's and docker's short ids).
MIN_PREFIX = 4
#: How many candidates an ambiguous reference reports.
CANDIDATES = 10


def resolve_job(conn: Connection, ref: str, owner: str | None) -> list[str]:
    """The ids of the jobs ``ref`` may mean, newest first, among ``owner``'s
    jobs (everyone's for None): the job whose id is ``ref`` alone; else every
    job whose id starts with ``ref`` (of MIN_PREFIX characters or more) and
    every job named ``ref``, at most CANDIDATES + 1 of them. One id means
    the reference is resolved; none, that no such job is visible; more, that
    it is ambiguous."""

    def matching(condition: Any) -> Sequence[Any]:
        query = select(jobs.c.id, jobs.c.seq).where(condition)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        return conn.execute(query.order_by(jobs.c.seq.desc()).limit(CANDIDATES + 1)).all()

    if matching(jobs.c.id == ref):
        return [ref]
    found = {row.id: row.seq for row in matching(jobs.c.name == ref)}
    if len(ref) >= MIN_PREFIX:
        prefixed = matching(jobs.c.id.startswith(ref, autoescape=True))
        # SQLite's LIKE ignores case: keep the ids that begin with ref as typed.
        found |= {row.id: row.seq for row in prefixed if row.id.startswith(ref)}
    return sorted(found, key=found.__getitem__, reverse=True)[: CANDIDATES + 1]


def list_jobs(
    conn: Connection,
    states: tuple[JobState, ...],
    labels: dict[str, str],
    name: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None = None,
    name_contains: str | None = None,
) -> JobPage:
    query = select(*_JOB_COLUMNS)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    if states:
        query = query.where(jobs.c.state.in_([s.value for s in states]))
    for key, value in labels.items():
        query = query.where(jobs.c.labels[key].as_string() == value)
    if name is not None:
        query = query.where(jobs.c.name == name)
    if name_contains:
        # Case-insensitive on every database; % and _ match themselves.
        query = query.where(jobs.c.name.icontains(name_contains, autoescape=True))
    if cursor:
        query = query.where(jobs.c.seq < int(cursor))
    rows = conn.execute(query.order_by(jobs.c.seq.desc()).limit(limit + 1)).all()
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return JobPage(jobs=[_job_from_row(row) for row in rows[:limit]], next_cursor=next_cursor)


def _job_state(conn: Connection, job_id: str) -> JobState:
    state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
    if state is None:
        raise JobNotFound(job_id)
    return JobState(state)


def cancel_job(
    conn: Connection, job_id: str, now: float, actor: str | None = None, kill: bool = False
) -> bool:
    """Cancel at once if not started; returns True if a running job must be
    stopped (``kill``: at once, without its grace). ``actor``, if given, is
    recorded in the audit log."""
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_(_CANCELLABLE))
        .values(
            state=JobState.CANCELLED.value,
            finished_at=now,
            reason=Reason.CANCELLED.value,
            message="cancelled before it started",
            not_before=None,
        )
    ).rowcount
    if done:
        if actor is not None:
            record(conn, now, actor, "cancel", job_id)
        announce(conn, f"job:{job_id}")
        return False
    asked = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == _RUNNING)
        .values(cancel_requested=True, **({"kill_requested": True} if kill else {}))
    ).rowcount
    if asked:
        if actor is not None:
            record(conn, now, actor, "kill" if kill else "cancel", job_id)
        announce(conn, f"job:{job_id}", f"{'kill' if kill else 'cancel'}:{job_id}")
        # No worker renews its lease (the worker died, or does not know the
        # attempt): nothing would stop it, so the cancel ends it now.
        attempt = conn.execute(select(jobs.c.attempt).where(jobs.c.id == job_id)).scalar()
        message = "cancelled; no live worker held it"
        ended = lose_attempt(conn, job_id, int(attempt or 0), message, now, None, True)
        return ended is None
    state = _job_state(conn, job_id)
    raise IllegalTransition(job_id, state.value, JobState.CANCELLED.value)
