"""The tables of the job store, as SQLAlchemy Core objects.

Times are epoch seconds (floats): portable between SQLite and PostgreSQL and
cheap to compare. The Alembic migrations under ``migrations/`` create exactly
these tables; a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("name", String(200)),
    Column("state", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("stdin", LargeBinary),
    Column("stdin_bytes", Integer, nullable=False, default=0),
    Column("on_worker_lost", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("reason", String(16)),
    Column("message", Text),
    # The number of the latest attempt; it is also that attempt's fencing token.
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker_id", String(64)),
    Column("lease_expires_at", Float),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("lost_count", Integer, nullable=False, default=0),
    # Labels a worker must have to claim the job (JSON object), or NULL.
    Column("requires", JSON),
    Index("ix_jobs_state_seq", "state", "seq"),
    Index("ix_jobs_name", "name"),
    Index("ix_jobs_worker", "worker_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("worker_id", String(64)),
    Column("host", String(255)),
    Column("pid", Integer),
    # The process's start time in clock ticks since boot, so that a pid that
    # was reused by an unrelated process is never signalled.
    Column("pid_start", BigInteger),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("reason", String(16)),
    Column("message", Text),
    Column("stdout_bytes", BigInteger, nullable=False, default=0),
    Column("stderr_bytes", BigInteger, nullable=False, default=0),
    # How the attempt was confined ('cgroup v1+namespaces', 'none'), the
    # limits that applied (JSON object) and what it used.
    Column("isolation", String(32)),
    Column("limits", JSON),
    Column("peak_memory", BigInteger),
    Column("cpu_seconds", Float),
    Index("ix_attempts_host_finished", "host", "finished_at"),
)

log_chunks = Table(
    "log_chunks",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    # Order of arrival across both streams.
    Column("seq", Integer, primary_key=True),
    Column("stream", SmallInteger, nullable=False),
    # Byte offsets just past this chunk: in its own stream, and in both streams merged.
    Column("end_offset", BigInteger, nullable=False),
    Column("merged_end", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ix_log_chunks_stream", "job_id", "attempt", "stream", "end_offset"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
)
