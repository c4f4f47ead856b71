"""What the metrics (docs/metrics.md) read from the store: counts of jobs
and attempts and the buckets of two histograms, each one aggregate query,
so that a scrape is right whichever server or worker did the work and
however often they restarted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Connection, and_, case, cast, func, select

from jobdock.store.protocol import BUCKETS, Histogram, JobCount, StoreMetrics
from jobdock.store.schema import attempts, jobs


def _image(conn: Connection) -> Any:
    """The spec's image (NULL for a process job); the spec is JSON text."""
    if conn.dialect.name == "sqlite":
        return func.json_extract(jobs.c.spec, "$.image")
    return cast(jobs.c.spec, JSON)["image"].as_string()


def job_counts(conn: Connection, label_keys: Sequence[str]) -> list[JobCount]:
    """Jobs by state, reason, runtime and the values of ``label_keys``."""
    runtime = case((_image(conn).is_(None), "process"), else_="container")
    labels = [jobs.c.labels[key].as_string() for key in label_keys]
    groups = [jobs.c.state, jobs.c.reason, runtime, *labels]
    started = func.sum(case((jobs.c.started_at.is_not(None), 1), else_=0))
    rows = conn.execute(select(*groups, func.count(), started).group_by(*groups))
    return [
        JobCount(
            state=row[0],
            reason=row[1],
            runtime=row[2],
            labels=tuple("" if value is None else str(value) for value in row[3:-2]),
            jobs=int(row[-2]),
            started=int(row[-1] or 0),
        )
        for row in rows
    ]


def histogram(conn: Connection, value: Any, where: Any) -> Histogram:
    """The histogram of ``value`` over the rows ``where`` selects."""
    counts = [func.sum(case((value <= bound, 1), else_=0)) for bound in BUCKETS]
    row = conn.execute(select(*counts, func.count(), func.sum(value)).where(where)).one()
    return Histogram(
        buckets=tuple(int(n or 0) for n in row[: len(BUCKETS)]),
        count=int(row[-2] or 0),
        sum=float(row[-1] or 0.0),
    )


def store_metrics(conn: Connection, label_keys: Sequence[str]) -> StoreMetrics:
    """One reading of everything the metrics take from the store."""
    finished = attempts.c.finished_at.is_not(None)
    by_reason = conn.execute(
        select(attempts.c.reason, func.count()).where(finished).group_by(attempts.c.reason)
    )
    retries = conn.execute(
        select(func.count()).select_from(attempts).where(attempts.c.number > 1)
    ).scalar_one()
    return StoreMetrics(
        jobs=job_counts(conn, label_keys),
        attempts={str(reason or ""): int(n) for reason, n in by_reason},
        retries=int(retries),
        queue_wait=histogram(
            conn, jobs.c.started_at - jobs.c.created_at, jobs.c.started_at.is_not(None)
        ),
        run_duration=histogram(
            conn,
            attempts.c.finished_at - attempts.c.started_at,
            and_(finished, attempts.c.started_at.is_not(None)),
        ),
    )
