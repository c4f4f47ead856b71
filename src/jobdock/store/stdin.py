"""A job's streamed stdin: a client appends the pieces as it reads them, the
worker reads them back in order, and they go when the job has finished.
Imports the foundation, the schema and statements.py.

Appends to one job are serialized by its row (``FOR UPDATE`` on
PostgreSQL; SQLite has one writer), so two uploads at once interleave
whole pieces and never take the same number.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select

from jobdock.errors import JobNotFound, StdinClosed, StdinTooLarge
from jobdock.models import TERMINAL_STATES, JobState, StdinRead
from jobdock.store.prepared import Prepared
from jobdock.store.schema import jobs, stdin_chunks
from jobdock.store.statements import announce, param

_FINISHED = tuple(state.value for state in TERMINAL_STATES)


def _last_piece(conn: Connection, job_id: str) -> Any:
    """The job's last piece (seq, end_offset, eof), or None; raises
    JobNotFound, or StdinClosed once the job has finished."""
    query = select(jobs.c.state).where(jobs.c.id == job_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    state = conn.execute(query).scalar()
    if state is None:
        raise JobNotFound(job_id)
    if JobState(state).terminal:
        raise StdinClosed(job_id, f"it is {state}")
    return conn.execute(
        select(stdin_chunks.c.seq, stdin_chunks.c.end_offset, stdin_chunks.c.eof)
        .where(stdin_chunks.c.job_id == job_id)
        .order_by(stdin_chunks.c.seq.desc())
        .limit(1)
    ).first()


def _add(conn: Connection, job_id: str, last: Any, data: bytes, eof: bool) -> int:
    seq, size = (last.seq, last.end_offset) if last is not None else (0, 0)
    end = size + len(data)
    conn.execute(
        insert(stdin_chunks).values(job_id=job_id, seq=seq + 1, end_offset=end, data=data, eof=eof)
    )
    announce(conn, f"job:{job_id}")
    return int(end)


def append_stdin(conn: Connection, job_id: str, data: bytes, limit: int) -> int:
    """Add ``data`` to the job's stdin (nothing, if it is empty: only the
    checks); returns the bytes it now holds. Raises StdinClosed (closed, or the job finished) or StdinTooLarge (it
    would then hold more than ``limit``)."""
    last = _last_piece(conn, job_id)
    if last is not None and last.eof:
        raise StdinClosed(job_id, "its stdin was closed")
    size = last.end_offset if last is not None else 0
    if size + len(data) > limit:
        raise StdinTooLarge(job_id, limit)
    if not data:
        return int(size)
    return _add(conn, job_id, last, data, eof=False)


def close_stdin(conn: Connection, job_id: str) -> int:
    """Close the job's stdin (the job reads end-of-file after what it
    holds); closing it again changes nothing. Returns the bytes it holds."""
    last = _last_piece(conn, job_id)
    if last is not None and last.eof:
        return int(last.end_offset)
    return _add(conn, job_id, last, b"", eof=True)


def read_stdin(conn: Connection, job_id: str, after: int, limit: int) -> StdinRead:
    """Up to ``limit`` pieces of the job's stdin after piece ``after``."""
    rows = conn.execute(
        select(stdin_chunks.c.seq, stdin_chunks.c.data, stdin_chunks.c.eof)
        .where(stdin_chunks.c.job_id == job_id, stdin_chunks.c.seq > after)
        .order_by(stdin_chunks.c.seq)
        .limit(limit)
    ).all()
    if not rows:
        return StdinRead(pieces=[], last=after, eof=False)
    pieces = [bytes(row.data) for row in rows if row.data]
    return StdinRead(pieces=pieces, last=rows[-1].seq, eof=bool(rows[-1].eof))


#: On the path of every job's end (prepared: store/prepared.py).
_DELETE = Prepared(lambda _: delete(stdin_chunks).where(stdin_chunks.c.job_id == param("job_id")))


def delete_stdin(conn: Connection, job_id: str) -> None:
    """Forget the job's stdin."""
    _DELETE.run(conn, job_id=job_id)


def drop_finished(conn: Connection) -> int:
    """Forget the stdin of every finished job (and of jobs no longer
    stored); returns how many pieces went."""
    live = exists().where(jobs.c.id == stdin_chunks.c.job_id, jobs.c.state.not_in(_FINISHED))
    return int(conn.execute(delete(stdin_chunks).where(~live)).rowcount)


def job_stdin(conn: Connection, job_id: str) -> bytes:
    """The stdin given with the job's spec (empty: none); raises JobNotFound."""
    row = conn.execute(select(jobs.c.stdin).where(jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    return bytes(row.stdin or b"")
