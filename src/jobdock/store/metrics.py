"""What the metrics (docs/metrics.md) read from the store: counts of jobs
and attempts and the buckets of two histograms, each one aggregate query,
so that a scrape is right whichever server or worker did the work and
however often they restarted. What deleted jobs had counted comes from the
tally (``store/tally.py``) and is added, so that no counter goes down."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table, and_, case, cast, func, select, text

from jobdock.models.records import BUCKETS, Histogram, JobCount, StoreMetrics, exit_status
from jobdock.store import tally
from jobdock.store.schema import attempts, jobs, metrics_tally, metrics_tally_jobs


def _image(conn: Connection) -> Any:
    """The spec's image (NULL for a process job); the spec is JSON text."""
    if conn.dialect.name == "sqlite":
        return func.json_extract(jobs.c.spec, "$.image")
    return cast(jobs.c.spec, JSON)["image"].as_string()


def runtime(conn: Connection) -> Any:
    """A job's runtime: ``process``, or ``container`` for a job with an image."""
    return case((_image(conn).is_(None), "process"), else_="container")


def _counts(conn: Connection, table: Table, groups: list[Any], *sums: Any) -> list[JobCount]:
    """``table``'s rows grouped by state, reason, runtime and label values
    (``groups``), with their number of jobs and of started jobs (``sums``)."""
    rows = conn.execute(select(*groups, *sums).select_from(table).group_by(*groups))
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


def job_counts(conn: Connection, label_keys: Sequence[str]) -> list[JobCount]:
    """Jobs by state, reason, runtime and the values of ``label_keys``."""
    labels = [jobs.c.labels[key].as_string() for key in label_keys]
    groups = [jobs.c.state, jobs.c.reason, runtime(conn), *labels]
    started = func.sum(case((jobs.c.started_at.is_not(None), 1), else_=0))
    return _counts(conn, jobs, groups, func.count(), started)


def deleted_job_counts(conn: Connection, label_keys: Sequence[str]) -> list[JobCount]:
    """Deleted jobs, from the tally, cut the same way as ``job_counts``."""
    table = metrics_tally_jobs
    labels = [table.c.labels[key].as_string() for key in label_keys]
    groups = [table.c.state, table.c.reason, table.c.runtime, *labels]
    return _counts(conn, table, groups, func.sum(table.c.jobs), func.sum(table.c.started))


def histogram(conn: Connection, value: Any, where: Any) -> Histogram:
    """The histogram of ``value`` over the rows ``where`` selects."""
    counts = [func.sum(case((value <= bound, 1), else_=0)) for bound in BUCKETS]
    row = conn.execute(select(*counts, func.count(), func.sum(value)).where(where)).one()
    return Histogram(
        buckets=tuple(int(n or 0) for n in row[: len(BUCKETS)]),
        count=int(row[-2] or 0),
        sum=float(row[-1] or 0.0),
    )


def _plus_tally(live: Histogram, counted: dict[str, float]) -> Histogram:
    """``live`` plus the observations of deleted rows (``counted``: label -> value)."""
    return Histogram(
        buckets=tuple(
            n + int(counted.get(tally.bucket_label(bound), 0))
            for bound, n in zip(BUCKETS, live.buckets, strict=True)
        ),
        count=live.count + int(counted.get(tally.COUNT, 0)),
        sum=live.sum + counted.get(tally.SUM, 0.0),
    )


def store_metrics(conn: Connection, label_keys: Sequence[str]) -> StoreMetrics:
    """One reading of everything the metrics take from the store."""
    if conn.dialect.name == "postgresql":
        # One snapshot of rows and tally: a prune that commits between two
        # of these queries must not be counted twice or not at all.
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    counted: dict[str, dict[str, float]] = {}
    for metric, label, value in conn.execute(select(metrics_tally)):
        counted.setdefault(metric, {})[label] = value
    finished = attempts.c.finished_at.is_not(None)
    by_reason = {
        str(reason or ""): int(n)
        for reason, n in conn.execute(
            select(attempts.c.reason, func.count()).where(finished).group_by(attempts.c.reason)
        )
    }
    for reason, n in counted.get("attempts", {}).items():
        by_reason[reason] = by_reason.get(reason, 0) + int(n)
    exits: dict[str, int] = {}
    for code, signal, n in conn.execute(
        select(attempts.c.exit_code, attempts.c.signal, func.count())
        .where(finished)
        .group_by(attempts.c.exit_code, attempts.c.signal)
    ):
        status = exit_status(code, signal)
        exits[status] = exits.get(status, 0) + int(n)
    for status, n in counted.get("exits", {}).items():
        exits[status] = exits.get(status, 0) + int(n)
    starts = conn.execute(
        select(func.count()).select_from(attempts).where(attempts.c.started_at.is_not(None))
    ).scalar_one()
    retries = conn.execute(
        select(func.count()).select_from(attempts).where(attempts.c.number > 1)
    ).scalar_one()
    queue_wait = histogram(
        conn, jobs.c.started_at - jobs.c.created_at, jobs.c.started_at.is_not(None)
    )
    run_duration = histogram(
        conn,
        attempts.c.finished_at - attempts.c.started_at,
        and_(finished, attempts.c.started_at.is_not(None)),
    )
    return StoreMetrics(
        jobs=job_counts(conn, label_keys),
        deleted=deleted_job_counts(conn, label_keys),
        attempts=by_reason,
        retries=int(retries) + int(counted.get("retries", {}).get("", 0)),
        queue_wait=_plus_tally(queue_wait, counted.get("queue_wait", {})),
        run_duration=_plus_tally(run_duration, counted.get("run_duration", {})),
        exits=exits,
        starts=int(starts) + int(counted.get("starts", {}).get("", 0)),
    )
