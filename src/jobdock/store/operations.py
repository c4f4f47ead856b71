"""The SQL of the store, one function per operation.

Each function takes a SQLAlchemy ``Connection`` inside a transaction, so one
copy serves every database. Statements on the path of every job are
:class:`Prepared`; the rest (listing with filters, the reaper) are plain Core.
Every state change is one conditional ``UPDATE``: it names the attempt
(the fencing token) and the state it expects, and changes nothing otherwise.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from jobdock.errors import FencedOff, IllegalTransition, JobNotFound
from jobdock.models import (
    STREAM_NUMBERS,
    STREAMS_BY_NUMBER,
    Attempt,
    Job,
    JobPage,
    JobSpec,
    JobState,
    Reason,
    Stream,
    WorkerRecord,
    sources_of,
    timestamp,
)
from jobdock.retry import retry_at
from jobdock.store.access import record
from jobdock.store.prepared import Prepared
from jobdock.store.protocol import (
    Claim,
    HeartbeatReply,
    Limits,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    Outcome,
    Started,
    WorkerInfo,
)
from jobdock.store.records import UNLOADABLE, invalid_record_message, load_spec, unloadable_job
from jobdock.store.schema import IDEMPOTENT, attempts, jobs, log_chunks, workers

HOST = socket.gethostname()
#: The PostgreSQL notification channel of jobdock's announcements.
CHANNEL = "jobdock"

_RUNNING = JobState.RUNNING.value
_QUEUED = JobState.QUEUED.value
_RETRYING = JobState.RETRYING.value
_CANCELLABLE = [s.value for s in sources_of(JobState.CANCELLED) if s != JobState.RUNNING]
_HIDDEN = ("stdin", "lease_expires_at", "lost_count", "requires")
_JOB_COLUMNS = [c for c in jobs.c if c.name not in _HIDDEN]
_RESULT = ("finished_at", "exit_code", "signal", "reason", "message")


def _p(name: str) -> Any:
    return bindparam(name)


#: Where a transaction collects its announcements (``conn.info``).
ANNOUNCEMENTS = "jobdock_announcements"


def announce(conn: Connection, *messages: str) -> None:
    """Tell other processes about this transaction's changes, once it commits
    (``work``, ``job:ID``, ``cancel:ID``). They are sent together just before
    the commit (see store/postgres.py). SQLite has no other processes to
    tell: its store raises the events itself."""
    if conn.dialect.name == "postgresql":
        conn.info.setdefault(ANNOUNCEMENTS, set()).update(messages)


def _holds() -> Any:
    """The job row is held by the attempt named by :job_id and :attempt."""
    return and_(
        jobs.c.id == _p("job_id"), jobs.c.attempt == _p("attempt"), jobs.c.state == _RUNNING
    )


# -- jobs ----------------------------------------------------------------------

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
    lambda _: insert(jobs).values({name: _p(name) for name in _INSERT_NAMES} | _INSERT_FIXED)
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
        **scheduling_values(job),
    }


def _insert_once_statement(dialect: str) -> Any:
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(jobs).values({name: _p(name) for name in _INSERT_NAMES} | _INSERT_FIXED)
    return statement.on_conflict_do_nothing(
        index_elements=["owner", "idempotency_key"], index_where=IDEMPOTENT
    )


_INSERT_ONCE = Prepared(_insert_once_statement)
_GET_BY_KEY = Prepared(
    lambda _: select(jobs.c.id).where(
        jobs.c.owner == _p("owner"), jobs.c.idempotency_key == _p("key")
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
    return Job(
        id=row.id,
        name=row.name,
        owner=row.owner,
        state=JobState(row.state),
        labels=json.loads(labels) if isinstance(labels, str) else labels,
        spec=JobSpec.model_validate_json(row.spec),
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
                limits=json.loads(a.limits) if isinstance(a.limits, str) else a.limits,
                peak_memory=a.peak_memory,
                cpu_seconds=a.cpu_seconds,
            )
            for a in attempt_rows
        ],
    )


_GET_JOB = Prepared(lambda _: select(*_JOB_COLUMNS).where(jobs.c.id == _p("job_id")))
_GET_ATTEMPTS = Prepared(
    lambda _: select(attempts).where(attempts.c.job_id == _p("job_id")).order_by(attempts.c.number)
)


def get_job(conn: Connection, job_id: str) -> Job:
    row = _GET_JOB.run(conn, job_id=job_id).first()
    if row is None:
        raise JobNotFound(job_id)
    return _job_from_row(row, _GET_ATTEMPTS.run(conn, job_id=job_id).all())


def list_jobs(
    conn: Connection,
    states: tuple[JobState, ...],
    labels: dict[str, str],
    name: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None = None,
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


# -- attempts --------------------------------------------------------------------


#: A job is eligible for a worker if the worker has every label it requires.
_HAS_LABELS = {
    "sqlite": "NOT EXISTS (SELECT 1 FROM json_each(jobs.requires) AS r "
    "WHERE json_extract(:labels, '$.\"' || r.key || '\"') IS NOT r.value)",
    "postgresql": "CAST(jobs.requires AS jsonb) <@ CAST(:labels AS jsonb)",
}


def _claim_statement(dialect: str) -> Any:
    eligible = or_(jobs.c.requires.is_(None), text(_HAS_LABELS[dialect]))
    # Jobs under a concurrency key are claimed by _claim_limited instead.
    oldest = (
        select(jobs.c.seq)
        .where(jobs.c.state == _QUEUED, eligible, jobs.c.concurrency_key.is_(None), _startable())
        .order_by(*_CLAIM_ORDER)
    )
    oldest = oldest.limit(_p("limit"))
    claim = update(jobs)
    if dialect == "postgresql":
        # A CTE runs once; the same subquery under IN may be run again for
        # each row, each run skipping the rows the last one locked, and so
        # claim more than the limit.
        picked = oldest.with_for_update(skip_locked=True).cte("picked")
        claim = claim.where(jobs.c.seq == picked.c.seq)
    else:
        claim = claim.where(jobs.c.seq.in_(oldest.scalar_subquery()))
    return _claiming(claim)


#: Highest priority first, then submission order (index ix_jobs_claim).
_CLAIM_ORDER = (jobs.c.priority.desc(), jobs.c.seq)


def _startable() -> Any:
    """The job's queue deadline has not passed."""
    return or_(jobs.c.start_by.is_(None), jobs.c.start_by > _p("now"))


def _claiming(claim: Any) -> Any:
    """The claim's UPDATE of the chosen rows: a new attempt under a lease."""
    return (
        claim.where(jobs.c.state == _QUEUED)
        .values(
            state=_RUNNING,
            attempt=jobs.c.attempt + 1,
            worker_id=_p("worker_id"),
            lease_expires_at=_p("lease_until"),
            cancel_requested=False,
            kill_requested=False,
        )
        .returning(
            jobs.c.seq,
            jobs.c.id,
            jobs.c.attempt,
            jobs.c.spec,
            jobs.c.stdin,
            jobs.c.owner,
            jobs.c.priority,
            jobs.c.failures,
            jobs.c.finish_by,
        )
    )


_CLAIM = Prepared(_claim_statement)
_INSERT_ATTEMPT = Prepared(
    lambda _: insert(attempts).values(
        job_id=_p("job_id"),
        number=_p("number"),
        worker_id=_p("worker_id"),
        host=_p("host"),
        stdout_bytes=0,
        stderr_bytes=0,
    )
)


def claim_jobs(
    conn: Connection,
    worker_id: str,
    labels: str,
    limit: int,
    now: float,
    lease_until: float,
    limits: Limits | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` queued jobs, highest priority then oldest first,
    whose required labels are among ``labels`` (a JSON object), within the
    concurrency ``limits``. Scheduled and retrying jobs that are due are
    queued first."""
    _PROMOTE.run(conn, now=now)
    limits = limits or Limits()
    params = {"worker_id": worker_id, "labels": labels, "now": now, "lease_until": lease_until}
    unlimited = limits.max_running is None and limits.per_owner is None
    if unlimited and _KEYED_QUEUED.run(conn).first() is None:
        rows = _CLAIM.run(conn, limit=limit, **params).all()
    else:
        rows = _claim_limited(conn, limit, limits, params)
    if not rows:
        return []
    rows.sort(key=lambda row: (-row.priority, row.seq))
    announce(conn, *(f"job:{row.id}" for row in rows))
    _INSERT_ATTEMPT.run_many(
        conn,
        [
            {"job_id": row.id, "number": row.attempt, "worker_id": worker_id, "host": HOST}
            for row in rows
        ],
    )
    claims = []
    for row in rows:
        spec = load_spec(row.spec)
        if isinstance(spec, str):
            # A record that no longer loads fails now, not at every claim.
            _fail_invalid(conn, row.id, row.attempt, spec, now)
            continue
        claims.append(
            Claim(
                job_id=row.id,
                attempt=row.attempt,
                spec=spec,
                stdin=row.stdin or b"",
                owner=row.owner,
                failures=row.failures,
                finish_by=row.finish_by,
            )
        )
    return claims


def _fail_invalid(conn: Connection, job_id: str, attempt: int, why: str, now: float) -> None:
    """Fail the just-claimed attempt of a job whose record cannot be loaded."""
    result = {
        "finished_at": now,
        "reason": Reason.INVALID_RECORD.value,
        "message": invalid_record_message(why),
    }
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == _RUNNING)
        .values(state=JobState.FAILED.value, worker_id=None, lease_expires_at=None, **result)
    )
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(**result)
    )


#: Scheduled and retrying jobs whose time has come become queued (only
#: they have a not_before: see schema.py).
_PROMOTE = Prepared(
    lambda _: (
        update(jobs).where(jobs.c.not_before <= _p("now")).values(state=_QUEUED, not_before=None)
    )
)
_KEYED_QUEUED = Prepared(
    lambda _: (
        select(jobs.c.seq)
        .where(jobs.c.state == _QUEUED, jobs.c.concurrency_key.is_not(None))
        .limit(1)
    )
)
_NEXT_DUE = Prepared(
    lambda _: select(func.min(jobs.c.not_before)).where(jobs.c.not_before.is_not(None))
)


def next_due(conn: Connection) -> float | None:
    """The earliest time a scheduled or retrying job becomes due."""
    row = _NEXT_DUE.run(conn).first()
    return None if row is None or row[0] is None else float(row[0])


#: Held while a claim counts running jobs against the limits (PostgreSQL),
#: so that two workers cannot both see room for the same last slot.
LIMITS_LOCK = 0x6A6F62646F636C
#: Whether a queued job's key has room: fewer of its key run, among its
#: owner's jobs (everyone's for a shared key), than its limit (the server's
#: for that key, else the job's own, else 1). The owner is compared as a
#: column, never put into a JSON path: an owner's name may hold any character.
_KEY_SHARED = {
    "sqlite": "json_extract(:shared, '$.\"' || jobs.concurrency_key || '\"') IS NOT NULL",
    "postgresql": "(CAST(:shared AS jsonb) ->> jobs.concurrency_key) IS NOT NULL",
}
_KEY_LIMIT = {
    "sqlite": "COALESCE(json_extract(:limits, '$.\"' || jobs.concurrency_key || '\"'),"
    " jobs.concurrency_limit, 1)",
    "postgresql": "COALESCE(CAST(CAST(:limits AS jsonb) ->> jobs.concurrency_key AS integer),"
    " jobs.concurrency_limit, 1)",
}


def _key_has_room(dialect: str) -> str:
    return (
        "(SELECT count(*) FROM jobs AS keyed WHERE keyed.state = 'running'"
        " AND keyed.concurrency_key = jobs.concurrency_key"
        f" AND (keyed.owner = jobs.owner OR {_KEY_SHARED[dialect]})) < {_KEY_LIMIT[dialect]}"
    )


def _key_scope(key: str, owner: str, shared: frozenset[str]) -> tuple[str, str | None]:
    """What a job's key counts against: its owner's jobs under the key, or
    everyone's for a shared key."""
    return (key, None) if key in shared else (key, owner)


def _claim_limited(
    conn: Connection, limit: int, limits: Limits, params: dict[str, Any]
) -> list[Any]:
    """The claim when limits apply: count what runs (under a lock on
    PostgreSQL), pick candidates in claim order whose key and owner have
    room, and take them while their key and owner (and the store) still
    have room."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(LIMITS_LOCK)))
    if limits.max_running is not None:
        running = conn.execute(select(func.count()).where(jobs.c.state == _RUNNING)).scalar()
        limit = min(limit, limits.max_running - int(running or 0))
        if limit <= 0:
            return []
    by_key: dict[tuple[str, str | None], int] = {}
    for key, owner, count in conn.execute(
        select(jobs.c.concurrency_key, jobs.c.owner, func.count())
        .where(jobs.c.state == _RUNNING, jobs.c.concurrency_key.is_not(None))
        .group_by(jobs.c.concurrency_key, jobs.c.owner)
    ):
        counted = _key_scope(key, owner, limits.shared)
        by_key[counted] = by_key.get(counted, 0) + int(count)
    by_owner = _running_by_owner(conn) if limits.per_owner is not None else {}
    eligible = or_(jobs.c.requires.is_(None), text(_HAS_LABELS[dialect]))
    room = or_(jobs.c.concurrency_key.is_(None), text(_key_has_room(dialect)))
    candidates = (
        select(jobs.c.seq, jobs.c.concurrency_key, jobs.c.concurrency_limit, jobs.c.owner)
        .where(jobs.c.state == _QUEUED, eligible, room, _startable())
        .order_by(*_CLAIM_ORDER)
        .limit(limit)
    )
    if limits.per_owner is not None:
        candidates = candidates.where(_owner_has_room(limits.per_owner))
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    found = conn.execute(
        candidates,
        {
            "labels": params["labels"],
            "now": params["now"],
            "shared": json.dumps(dict.fromkeys(limits.shared, 1)),
            "limits": json.dumps(dict(limits.per_key)),
        },
    ).all()
    chosen = []
    for row in found:
        key, owner = row.concurrency_key, row.owner
        scope = None if key is None else _key_scope(key, owner, limits.shared)
        if scope is not None:
            own = 1 if row.concurrency_limit is None else row.concurrency_limit
            if by_key.get(scope, 0) >= limits.per_key.get(key, own):
                continue
        if limits.per_owner is not None and by_owner.get(owner, 0) >= limits.per_owner:
            continue
        if scope is not None:
            by_key[scope] = by_key.get(scope, 0) + 1
        by_owner[owner] = by_owner.get(owner, 0) + 1
        chosen.append(row.seq)
    if not chosen:
        return []
    claim = _claiming(update(jobs).where(jobs.c.seq.in_(chosen)))
    # Only the claim's own parameters: Core would take any other that names
    # a column (labels!) as a value to SET.
    lease = {"worker_id": params["worker_id"], "lease_until": params["lease_until"]}
    return list(conn.execute(claim, lease).all())


def _running_by_owner(conn: Connection) -> dict[str, int]:
    """How many jobs each owner has running."""
    rows = conn.execute(
        select(jobs.c.owner, func.count()).where(jobs.c.state == _RUNNING).group_by(jobs.c.owner)
    ).all()
    return {owner: int(count) for owner, count in rows}


def _owner_has_room(per_owner: int) -> Any:
    """The job's owner runs fewer than ``per_owner`` jobs. A correlated
    count, not a JSON lookup as for keys: an owner's name (a certificate's
    common name) may hold any character."""
    running = jobs.alias("running")
    count = (
        select(func.count())
        .where(running.c.state == _RUNNING, running.c.owner == jobs.c.owner)
        .scalar_subquery()
    )
    return count < per_owner


_START_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(_holds())
        .values(started_at=func.coalesce(jobs.c.started_at, _p("started_at")))
    )
)
_START_ATTEMPT = Prepared(
    lambda _: (
        update(attempts)
        .where(attempts.c.job_id == _p("job_id"), attempts.c.number == _p("attempt"))
        .values(pid=_p("pid"), pid_start=_p("pid_start"), host=_p("host"), started_at=_p("at"))
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
    )
    announce(conn, f"job:{job_id}")


def _fence_statement(dialect: str) -> Any:
    query = select(jobs.c.seq).where(_holds())
    if dialect == "postgresql":
        # Keep the row from changing hands until the chunks are in.
        query = query.with_for_update(read=True)
    return query


_FENCE = Prepared(_fence_statement)
_INSERT_CHUNK = Prepared(
    lambda _: insert(log_chunks).values(
        {c.name: _p(c.name) for c in log_chunks.c}  # every column, by name
    )
)


def append_logs(conn: Connection, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
    if _FENCE.run(conn, job_id=job_id, attempt=attempt).first() is None:
        raise FencedOff(job_id, attempt)
    _INSERT_CHUNK.run_many(
        conn,
        [
            {
                "job_id": job_id,
                "attempt": attempt,
                "seq": chunk.seq,
                "stream": STREAM_NUMBERS[chunk.stream],
                "end_offset": chunk.end,
                "merged_end": chunk.merged_offset + len(chunk.data),
                "data": chunk.data,
            }
            for chunk in chunks
        ],
    )
    announce(conn, f"job:{job_id}")


#: What a finished attempt records besides its result.
_ACCOUNTING = ("stdout_bytes", "stderr_bytes", "isolation", "limits", "peak_memory", "cpu_seconds")

_FINISH_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(_holds())
        .values(
            {name: _p(name) for name in (*_RESULT, "state")}
            | {"worker_id": None, "lease_expires_at": None}
        )
    )
)
_FINISH_ATTEMPT = Prepared(
    lambda _: (
        update(attempts)
        .where(attempts.c.job_id == _p("job_id"), attempts.c.number == _p("attempt"))
        .values({name: _p(name) for name in (*_RESULT, *_ACCOUNTING)})
    )
)


_FINISH = _JobAndAttempt(_FINISH_JOB, _FINISH_ATTEMPT)
#: A failed attempt whose job is run again: retrying until ``not_before``.
_RETRY_JOB = Prepared(
    lambda _: (
        update(jobs)
        .where(_holds())
        .values(
            {name: _p(name) for name in ("exit_code", "signal", "reason", "message", "state")}
            | {
                "not_before": _p("next_attempt_at"),
                "failures": jobs.c.failures + 1,
                "worker_id": None,
                "lease_expires_at": None,
            }
        )
    )
)
_RETRY = _JobAndAttempt(_RETRY_JOB, _FINISH_ATTEMPT)


def finish_attempt(conn: Connection, job_id: str, attempt: int, outcome: Outcome) -> None:
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
    announce(conn, f"job:{job_id}", *(["work"] if retrying else []))


_BEAT = Prepared(
    lambda _: update(workers).where(workers.c.id == _p("worker_id")).values(heartbeat_at=_p("now"))
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
) -> JobState | None:
    """Record an attempt as worker_lost and requeue or fail its job.

    ``max_lost`` None means the loss is not the job's fault (a clean release)
    and does not count. Returns the job's new state, or None if the attempt
    was no longer running.
    """
    holds = and_(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == _RUNNING)
    row = conn.execute(
        select(
            jobs.c.on_worker_lost,
            jobs.c.lost_count,
            jobs.c.cancel_requested,
            jobs.c.spec,
            jobs.c.failures,
            jobs.c.finish_by,
        ).where(holds)
    ).first()
    if row is None:
        return None
    lost_count = row.lost_count + (0 if max_lost is None else 1)
    values: dict[str, Any] = {"worker_id": None, "lease_expires_at": None}
    spec = load_spec(row.spec)
    retry = None if isinstance(spec, str) else spec.retry
    if row.cancel_requested:
        new_state, reason = JobState.CANCELLED, Reason.CANCELLED
    elif retry is not None and retry.count_worker_lost and max_lost is not None:
        # The loss spends the retry budget, whatever the policy's on_reasons.
        at = retry_at(retry, row.failures, now, row.finish_by)
        new_state, reason = (JobState.FAILED, Reason.WORKER_LOST)
        if at is not None and row.on_worker_lost == "requeue":
            new_state, reason = JobState.RETRYING, None
            values.update(not_before=at, failures=row.failures + 1)
    elif row.on_worker_lost == "requeue" and (max_lost is None or lost_count <= max_lost):
        new_state, reason = JobState.QUEUED, None
    else:
        new_state, reason = JobState.FAILED, Reason.WORKER_LOST
    if expired_only:
        holds = and_(holds, jobs.c.lease_expires_at < now)
    values.update(state=new_state.value, lost_count=lost_count)
    if new_state.terminal:
        values.update(finished_at=now, reason=reason.value if reason else None, message=message)
    else:
        # A requeued job says why it is waiting again.
        values["message"] = message
    if not conn.execute(update(jobs).where(holds).values(**values)).rowcount:
        return None
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(finished_at=now, reason=Reason.WORKER_LOST.value, message=message)
    )
    waiting = new_state in (JobState.QUEUED, JobState.RETRYING)
    announce(conn, f"job:{job_id}", *(["work"] if waiting else []))
    return new_state


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
    """(pid, start ticks) of the attempts on ``host`` lost since ``since``."""
    rows = conn.execute(
        select(attempts.c.pid, attempts.c.pid_start).where(
            attempts.c.host == host,
            attempts.c.reason == Reason.WORKER_LOST.value,
            attempts.c.finished_at >= since,
            attempts.c.pid.is_not(None),
        )
    ).all()
    return [(row.pid, row.pid_start) for row in rows]


# -- workers ---------------------------------------------------------------------


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


# -- logs ------------------------------------------------------------------------

_LOG_JOB = Prepared(lambda _: select(jobs.c.state, jobs.c.attempt).where(jobs.c.id == _p("job_id")))


def _chunks_statement(stream: bool) -> Prepared:
    end = log_chunks.c.end_offset if stream else log_chunks.c.merged_end
    query = select(log_chunks).where(
        log_chunks.c.job_id == _p("job_id"),
        log_chunks.c.attempt == _p("attempt"),
        end > _p("offset"),
    )
    if stream:
        query = query.where(log_chunks.c.stream == _p("stream"))
    return Prepared(lambda _: query.order_by(log_chunks.c.seq).limit(_p("limit")))


_CHUNKS_OF_STREAM = _chunks_statement(stream=True)
_CHUNKS_MERGED = _chunks_statement(stream=False)


def read_logs(
    conn: Connection,
    job_id: str,
    attempt: int | None,
    stream: Stream | None,
    offset: int,
    limit: int,
) -> LogRead:
    # Read the job's state before its chunks: an attempt that had ended by
    # then had written all of its chunks, so "done" is never premature.
    job = _LOG_JOB.run(conn, job_id=job_id).first()
    if job is None:
        raise JobNotFound(job_id)
    number = job.attempt if attempt is None else attempt
    if number == 0:
        terminal = JobState(job.state).terminal
        return LogRead(attempt=0, chunks=[], done=terminal, terminal=terminal)
    done = number < job.attempt or job.state != _RUNNING
    if stream is None:
        rows = _CHUNKS_MERGED.run(
            conn, job_id=job_id, attempt=number, offset=offset, limit=limit
        ).all()
    else:
        rows = _CHUNKS_OF_STREAM.run(
            conn,
            job_id=job_id,
            attempt=number,
            offset=offset,
            stream=STREAM_NUMBERS[stream],
            limit=limit,
        ).all()
    chunks = [
        LogChunk(
            seq=row.seq,
            stream=STREAMS_BY_NUMBER[row.stream],
            offset=row.end_offset - len(row.data),
            merged_offset=row.merged_end - len(row.data),
            data=row.data,
        )
        for row in rows
    ]
    return LogRead(attempt=number, chunks=chunks, done=done, terminal=JobState(job.state).terminal)
