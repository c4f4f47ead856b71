"""Log chunks: a running attempt appends them (fenced), readers read them back
by attempt, stream and offset. Imports the foundation, the schema and
statements.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select

from jobdock.errors import FencedOff, JobNotFound
from jobdock.models import STREAM_NUMBERS, STREAMS_BY_NUMBER, JobState, Stream
from jobdock.models.records import LogChunk, LogRead
from jobdock.store.prepared import Prepared
from jobdock.store.schema import attempts, jobs, log_chunks
from jobdock.store.statements import announce, held, param

_RUNNING = JobState.RUNNING.value


def _fence_statement(dialect: str) -> Any:
    query = select(jobs.c.seq).where(held())
    if dialect == "postgresql":
        # Keep the row from changing hands until the chunks are in.
        query = query.with_for_update(read=True)
    return query


_FENCE = Prepared(_fence_statement)
_INSERT_CHUNK = Prepared(
    lambda _: insert(log_chunks).values(
        {c.name: param(c.name) for c in log_chunks.c}  # every column, by name
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
                "at": chunk.at,
            }
            for chunk in chunks
        ],
    )
    announce(conn, f"job:{job_id}")


_LOG_JOB = Prepared(
    lambda _: select(jobs.c.state, jobs.c.attempt).where(jobs.c.id == param("job_id"))
)


def _chunks_statement(stream: bool) -> Prepared:
    end = log_chunks.c.end_offset if stream else log_chunks.c.merged_end
    query = select(log_chunks).where(
        log_chunks.c.job_id == param("job_id"),
        log_chunks.c.attempt == param("attempt"),
        end > param("offset"),
    )
    if stream:
        query = query.where(log_chunks.c.stream == param("stream"))
    return Prepared(lambda _: query.order_by(log_chunks.c.seq).limit(param("limit")))


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
    chunks = _chunks(conn, job_id, number, rows)
    return LogRead(attempt=number, chunks=chunks, done=done, terminal=JobState(job.state).terminal)


_STARTED = Prepared(
    lambda _: select(attempts.c.started_at).where(
        attempts.c.job_id == param("job_id"), attempts.c.number == param("attempt")
    )
)


def _started(conn: Connection, job_id: str, attempt: int) -> float | None:
    row = _STARTED.run(conn, job_id=job_id, attempt=attempt).first()
    return None if row is None else float(row.started_at) if row.started_at is not None else None


def _chunks(conn: Connection, job_id: str, attempt: int, rows: Sequence[Any]) -> list[LogChunk]:
    """Chunks of rows; one stored before arrival times were (migration 0010)
    gets its attempt's start time."""
    started = None
    if any(row.at is None for row in rows):
        started = _started(conn, job_id, attempt)
    return [
        LogChunk(
            seq=row.seq,
            stream=STREAMS_BY_NUMBER[row.stream],
            offset=row.end_offset - len(row.data),
            merged_offset=row.merged_end - len(row.data),
            data=row.data,
            at=started if row.at is None else row.at,
        )
        for row in rows
    ]


def _back_statement(stream: bool) -> Prepared:
    end = log_chunks.c.end_offset if stream else log_chunks.c.merged_end
    query = select(log_chunks).where(
        log_chunks.c.job_id == param("job_id"),
        log_chunks.c.attempt == param("attempt"),
        end <= param("before"),
    )
    if stream:
        query = query.where(log_chunks.c.stream == param("stream"))
    return Prepared(lambda _: query.order_by(log_chunks.c.seq.desc()).limit(param("limit")))


_BACK_OF_STREAM = _back_statement(stream=True)
_BACK_MERGED = _back_statement(stream=False)


def read_logs_back(
    conn: Connection, job_id: str, attempt: int, stream: Stream | None, before: int, limit: int
) -> list[LogChunk]:
    """Up to ``limit`` chunks of an attempt that end at or before offset
    ``before`` (in ``stream``, or merged), the last first."""
    if stream is None:
        rows = _BACK_MERGED.run(
            conn, job_id=job_id, attempt=attempt, before=before, limit=limit
        ).all()
    else:
        rows = _BACK_OF_STREAM.run(
            conn,
            job_id=job_id,
            attempt=attempt,
            before=before,
            stream=STREAM_NUMBERS[stream],
            limit=limit,
        ).all()
    return _chunks(conn, job_id, attempt, rows)


def log_offset_at(
    conn: Connection, job_id: str, attempt: int, stream: Stream | None, since: float
) -> int:
    """The offset (in ``stream``, or merged) where an attempt's output that
    arrived at or after ``since`` begins: the end of what arrived before."""
    end = log_chunks.c.merged_end if stream is None else log_chunks.c.end_offset
    arrived = func.coalesce(log_chunks.c.at, _started(conn, job_id, attempt))
    query = select(func.max(end)).where(
        log_chunks.c.job_id == job_id, log_chunks.c.attempt == attempt, arrived < since
    )
    if stream is not None:
        query = query.where(log_chunks.c.stream == STREAM_NUMBERS[stream])
    found: int | None = conn.execute(query).scalar()
    return found or 0
