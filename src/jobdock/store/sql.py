"""The SQL store: SQLAlchemy Core statements shared by every database.

Each operation is a plain function of a SQLAlchemy ``Connection``, so one
copy of the SQL serves SQLite (run on dedicated threads) and any other
database. Writes go through :class:`GroupCommitter`; every state change is a
single conditional ``UPDATE ... WHERE state IN (...) AND attempt = ?``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from jobdock.errors import FencedOff, IllegalTransition, JobNotFound, StoreError
from jobdock.events import Events
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
    sources_of,
    timestamp,
)
from jobdock.store.group_commit import GroupCommitter
from jobdock.store.migrate import upgrade
from jobdock.store.protocol import (
    Claim,
    HeartbeatReply,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    Outcome,
    Started,
)
from jobdock.store.schema import attempts, jobs, log_chunks

T = TypeVar("T")
_log = logging.getLogger(__name__)

_RUNNING = JobState.RUNNING.value
_QUEUED = JobState.QUEUED.value
_CANCELLABLE = tuple(s.value for s in sources_of(JobState.CANCELLED) if s != JobState.RUNNING)
HOST = socket.gethostname()

_JOB_COLUMNS = [c for c in jobs.c if c.name not in ("stdin", "lease_expires_at", "lost_count")]


class SqlStore:
    """A Store on a SQL database through SQLAlchemy 2."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.events = Events()
        self._synchronous = sqlite_synchronous
        self._engine: Engine | None = None
        self._writer: GroupCommitter | None = None
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobdock-reader")

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        engine = self._make_engine()
        self._engine = engine
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._readers, upgrade, engine)
        except DBAPIError as exc:
            raise StoreError(f"cannot open the store at {_safe_url(self.url)}: {exc.orig}") from exc
        self._writer = GroupCommitter(engine)
        await self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        self._readers.shutdown(wait=True)
        if self._engine is not None:
            self._engine.dispose()

    async def __aenter__(self) -> SqlStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _make_engine(self) -> Engine:
        if not self.url.startswith("sqlite"):
            raise StoreError(f"unsupported store URL {_safe_url(self.url)} (use sqlite:///PATH)")
        path = self.url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=8,
        )
        synchronous = self._synchronous

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy, not the driver, open transactions (BEGIN IMMEDIATE
            # for writers keeps lock upgrades from failing under load).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # The writer takes the write lock up front, so that a second
            # process writing the same file waits instead of failing.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN")

        return engine

    # -- running SQL -----------------------------------------------------------

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        engine = self._engine
        if engine is None:
            raise StoreError("the store is not open")

        def run() -> T:
            with engine.connect() as conn:
                return fn(conn, *args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except DBAPIError as exc:
            raise StoreError(f"the store failed: {exc.orig}") from exc

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise StoreError("the store is not open")
        return await self._writer.write(fn, *args)

    # -- jobs ----------------------------------------------------------------

    async def create_job(self, job: NewJob) -> Job:
        spec = job.spec
        await self._write(_insert_job, job)
        self.events.work_available()
        return Job(
            id=job.id,
            name=spec.name,
            state=JobState.QUEUED,
            labels=spec.labels,
            spec=spec.without_stdin(),
            stdin_bytes=len(job.stdin),
            created_at=timestamp(job.created_at),
        )

    async def get_job(self, job_id: str) -> Job:
        return await self._read(_get_job, job_id)

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        return await self._read(_list_jobs, tuple(states), dict(labels or {}), name, limit, cursor)

    async def cancel_job(self, job_id: str, now: float) -> Job:
        running = await self._write(_cancel_job, job_id, now)
        self.events.job_changed(job_id)
        if running:
            self.events.cancel_requested(job_id)
        return await self.get_job(job_id)

    # -- attempts --------------------------------------------------------------

    async def claim_jobs(
        self, worker_id: str, limit: int, now: float, lease_seconds: float
    ) -> list[Claim]:
        if limit <= 0:
            return []
        claims = await self._write(_claim_jobs, worker_id, limit, now, now + lease_seconds)
        for claim in claims:
            self.events.job_changed(claim.job_id)
        return claims

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        await self._write(_mark_started, job_id, attempt, started)
        self.events.job_changed(job_id)

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        if chunks:
            await self._write(_append_logs, job_id, attempt, chunks)
            self.events.job_changed(job_id)

    async def finish_attempt(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        await self._write(_finish_attempt, job_id, attempt, outcome)
        self.events.job_changed(job_id)

    async def heartbeat(
        self, worker_id: str, running: Mapping[str, int], lease_until: float
    ) -> HeartbeatReply:
        return await self._write(_heartbeat, worker_id, dict(running), lease_until)

    async def release_attempt(self, job_id: str, attempt: int, message: str, now: float) -> None:
        state = await self._write(_lose_attempt, job_id, attempt, message, now, None, False)
        self.events.job_changed(job_id)
        if state == JobState.QUEUED:
            self.events.work_available()

    async def reap_expired(self, now: float, max_lost: int) -> list[LostAttempt]:
        lost = await self._write(_reap_expired, now, max_lost)
        for item in lost:
            self.events.job_changed(item.job_id)
        if any(item.new_state == JobState.QUEUED for item in lost):
            self.events.work_available()
        return lost

    # -- logs ------------------------------------------------------------------

    async def read_logs(
        self,
        job_id: str,
        *,
        attempt: int | None,
        stream: Stream | None,
        offset: int,
        limit: int = 8,
    ) -> LogRead:
        return await self._read(_read_logs, job_id, attempt, stream, offset, limit)


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


# -- the SQL, one function per operation ---------------------------------------


def _insert_job(conn: Connection, job: NewJob) -> None:
    spec = job.spec
    conn.execute(
        insert(jobs),
        {
            "id": job.id,
            "name": spec.name,
            "state": _QUEUED,
            "spec": spec.without_stdin().model_dump_json(exclude_defaults=True),
            "labels": spec.labels,
            "stdin": job.stdin or None,
            "stdin_bytes": len(job.stdin),
            "on_worker_lost": spec.on_worker_lost,
            "created_at": job.created_at,
            "attempt": 0,
            "cancel_requested": False,
            "lost_count": 0,
        },
    )


def _job_from_row(row: Row[Any], attempt_rows: Sequence[Row[Any]] = ()) -> Job:
    return Job(
        id=row.id,
        name=row.name,
        state=JobState(row.state),
        labels=row.labels,
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
            )
            for a in attempt_rows
        ],
    )


def _get_job(conn: Connection, job_id: str) -> Job:
    row = conn.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    attempt_rows = conn.execute(
        select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
    ).all()
    return _job_from_row(row, attempt_rows)


def _list_jobs(
    conn: Connection,
    states: tuple[JobState, ...],
    labels: dict[str, str],
    name: str | None,
    limit: int,
    cursor: str | None,
) -> JobPage:
    query = select(*_JOB_COLUMNS)
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


def _cancel_job(conn: Connection, job_id: str, now: float) -> bool:
    """Cancel at once if not started; returns True if a running job must be stopped."""
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_(_CANCELLABLE))
        .values(
            state=JobState.CANCELLED.value,
            finished_at=now,
            reason=Reason.CANCELLED.value,
            message="cancelled before it started",
        )
    ).rowcount
    if done:
        return False
    asked = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == _RUNNING)
        .values(cancel_requested=True)
    ).rowcount
    if asked:
        return True
    state = _job_state(conn, job_id)
    raise IllegalTransition(job_id, state.value, JobState.CANCELLED.value)


def _claim_jobs(
    conn: Connection, worker_id: str, limit: int, now: float, lease_until: float
) -> list[Claim]:
    oldest = select(jobs.c.seq).where(jobs.c.state == _QUEUED).order_by(jobs.c.seq).limit(limit)
    if conn.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.seq.in_(oldest.scalar_subquery()), jobs.c.state == _QUEUED)
        .values(
            state=_RUNNING,
            attempt=jobs.c.attempt + 1,
            worker_id=worker_id,
            lease_expires_at=lease_until,
            cancel_requested=False,
        )
        .returning(jobs.c.seq, jobs.c.id, jobs.c.attempt, jobs.c.spec, jobs.c.stdin)
    ).all()
    if not rows:
        return []
    rows = sorted(rows, key=lambda row: row.seq)
    conn.execute(
        insert(attempts),
        [
            {"job_id": row.id, "number": row.attempt, "worker_id": worker_id, "host": HOST}
            for row in rows
        ],
    )
    return [
        Claim(
            job_id=row.id,
            attempt=row.attempt,
            spec=JobSpec.model_validate_json(row.spec),
            stdin=row.stdin or b"",
        )
        for row in rows
    ]


def _holds(job_id: str, attempt: int) -> Any:
    return and_(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.state == _RUNNING)


def _check_fence(conn: Connection, job_id: str, attempt: int) -> None:
    query = select(jobs.c.seq).where(_holds(job_id, attempt))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    if conn.execute(query).first() is None:
        raise FencedOff(job_id, attempt)


def _mark_started(conn: Connection, job_id: str, attempt: int, started: Started) -> None:
    moved = conn.execute(
        update(jobs)
        .where(_holds(job_id, attempt))
        .values(started_at=func.coalesce(jobs.c.started_at, started.started_at))
    ).rowcount
    if not moved:
        raise FencedOff(job_id, attempt)
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(
            pid=started.pid,
            pid_start=started.pid_start,
            host=started.host,
            started_at=started.started_at,
        )
    )


def _append_logs(conn: Connection, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
    _check_fence(conn, job_id, attempt)
    conn.execute(
        insert(log_chunks),
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


def _finish_attempt(conn: Connection, job_id: str, attempt: int, outcome: Outcome) -> None:
    result = {
        "finished_at": outcome.finished_at,
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "reason": outcome.reason.value,
        "message": outcome.message,
    }
    moved = conn.execute(
        update(jobs)
        .where(_holds(job_id, attempt))
        .values(state=outcome.state.value, worker_id=None, lease_expires_at=None, **result)
    ).rowcount
    if not moved:
        raise FencedOff(job_id, attempt)
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(stdout_bytes=outcome.stdout_bytes, stderr_bytes=outcome.stderr_bytes, **result)
    )


def _heartbeat(
    conn: Connection, worker_id: str, running: dict[str, int], lease_until: float
) -> HeartbeatReply:
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.worker_id == worker_id, jobs.c.state == _RUNNING)
        .values(lease_expires_at=lease_until)
        .returning(jobs.c.id, jobs.c.attempt, jobs.c.cancel_requested)
    ).all()
    held = {(row.id, row.attempt) for row in rows}
    return HeartbeatReply(
        lost=frozenset(job for job, number in running.items() if (job, number) not in held),
        cancel=frozenset(row.id for row in rows if row.cancel_requested),
    )


def _lose_attempt(
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
    row = conn.execute(
        select(jobs.c.on_worker_lost, jobs.c.lost_count, jobs.c.cancel_requested).where(
            _holds(job_id, attempt)
        )
    ).first()
    if row is None:
        return None
    counted = max_lost is not None
    lost_count = row.lost_count + (1 if counted else 0)
    if row.cancel_requested:
        new_state, reason = JobState.CANCELLED, Reason.CANCELLED
    elif row.on_worker_lost == "requeue" and (max_lost is None or lost_count <= max_lost):
        new_state, reason = JobState.QUEUED, None
    else:
        new_state, reason = JobState.FAILED, Reason.WORKER_LOST
    condition = _holds(job_id, attempt)
    if expired_only:
        condition = and_(condition, jobs.c.lease_expires_at < now)
    values: dict[str, Any] = {
        "state": new_state.value,
        "worker_id": None,
        "lease_expires_at": None,
        "lost_count": lost_count,
    }
    if new_state.terminal:
        values.update(finished_at=now, reason=reason.value if reason else None, message=message)
    if not conn.execute(update(jobs).where(condition).values(**values)).rowcount:
        return None
    conn.execute(
        update(attempts)
        .where(attempts.c.job_id == job_id, attempts.c.number == attempt)
        .values(finished_at=now, reason=Reason.WORKER_LOST.value, message=message)
    )
    return new_state


def _reap_expired(conn: Connection, now: float, max_lost: int) -> list[LostAttempt]:
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
        state = _lose_attempt(conn, row.id, row.attempt, message, now, max_lost, True)
        if state is not None:
            lost.append(LostAttempt(row.id, row.attempt, row.host, row.pid, row.pid_start, state))
    return lost


def _read_logs(
    conn: Connection,
    job_id: str,
    attempt: int | None,
    stream: Stream | None,
    offset: int,
    limit: int,
) -> LogRead:
    # Read the job's state before its chunks: an attempt that had ended by
    # then had written all of its chunks, so "done" is never premature.
    job = conn.execute(select(jobs.c.state, jobs.c.attempt).where(jobs.c.id == job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    number = job.attempt if attempt is None else attempt
    if number == 0:
        return LogRead(attempt=0, chunks=[], done=JobState(job.state).terminal)
    done = number < job.attempt or job.state != _RUNNING
    end_column = log_chunks.c.merged_end if stream is None else log_chunks.c.end_offset
    query = select(log_chunks).where(
        log_chunks.c.job_id == job_id,
        log_chunks.c.attempt == number,
        end_column > offset,
    )
    if stream is not None:
        query = query.where(log_chunks.c.stream == STREAM_NUMBERS[stream])
    rows = conn.execute(query.order_by(log_chunks.c.seq).limit(limit)).all()
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
    return LogRead(attempt=number, chunks=chunks, done=done)
