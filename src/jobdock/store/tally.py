"""What deleted jobs contributed to the metrics (docs/metrics.md).

The job counters and histograms are aggregates of the store's rows, so
deleting finished jobs would lower them, which Prometheus takes for a
counter reset. The transaction that deletes jobs adds what they contributed
to two tally tables, and a scrape adds the tally to what it reads from the
remaining rows (``store/metrics.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table
from sqlalchemy.dialects import postgresql, sqlite

from jobdock.models.records import BUCKETS, exit_status
from jobdock.store.schema import metrics_tally, metrics_tally_jobs

#: The labels of a histogram's tally rows: each bucket's bound, then these.
COUNT, SUM = "count", "sum"


def bucket_label(bound: float) -> str:
    """The tally row's label of the bucket ``le=bound``."""
    return repr(float(bound))


def _key(state: str, reason: str | None, runtime: str, labels: Mapping[str, Any]) -> str:
    text = json.dumps([state, reason, runtime, labels], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _observations(metric: str, values: Sequence[float]) -> dict[tuple[str, str], float]:
    found = {(metric, bucket_label(b)): float(sum(v <= b for v in values)) for b in BUCKETS}
    return found | {(metric, COUNT): float(len(values)), (metric, SUM): float(sum(values))}


def _add(conn: Connection, table: Table, rows: list[dict[str, Any]], sums: Sequence[str]) -> None:
    """Insert ``rows``, or add their ``sums`` columns to the rows already
    there under the same primary key (in key order, so that two prunes at
    once cannot deadlock)."""
    if not rows:
        return
    keys = [column.name for column in table.primary_key.columns]
    rows.sort(key=lambda row: [row[name] for name in keys])
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = make(table)
    upsert = statement.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + statement.excluded[name] for name in sums},
    )
    conn.execute(upsert, rows)


#: A row that a DELETE ... RETURNING gave back.
Deleted = Row[*tuple[Any, ...]]


def add_deleted(conn: Connection, jobs: Iterable[Deleted], attempts: Iterable[Deleted]) -> None:
    """Add deleted jobs and attempts to the tally. ``jobs`` rows have
    ``state``, ``reason``, ``runtime``, ``labels``, ``created_at`` and
    ``started_at``; ``attempts`` rows ``number``, ``reason``, ``started_at``,
    ``finished_at``, ``exit_code`` and ``signal``: what the rows the DELETE removed returned, so that
    each deleted row is counted once however many prunes run at once."""
    groups: dict[str, dict[str, Any]] = {}
    waits: list[float] = []
    for job in jobs:
        key = _key(job.state, job.reason, job.runtime, job.labels)
        group = groups.setdefault(
            key,
            {
                "key": key,
                "state": job.state,
                "reason": job.reason,
                "runtime": job.runtime,
                "labels": job.labels,
                "jobs": 0,
                "started": 0,
            },
        )
        group["jobs"] += 1
        if job.started_at is not None:
            group["started"] += 1
            waits.append(job.started_at - job.created_at)
    reasons: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    retries = starts = 0
    runs: list[float] = []
    for attempt in attempts:
        retries += attempt.number > 1
        starts += attempt.started_at is not None
        if attempt.finished_at is not None:
            reasons[str(attempt.reason or "")] += 1
            exits[exit_status(attempt.exit_code, attempt.signal)] += 1
            if attempt.started_at is not None:
                runs.append(attempt.finished_at - attempt.started_at)
    values = {("attempts", reason): float(n) for reason, n in reasons.items()}
    values |= {("exits", status): float(n) for status, n in exits.items()}
    values[("retries", "")] = float(retries)
    values[("starts", "")] = float(starts)
    values |= _observations("queue_wait", waits) | _observations("run_duration", runs)
    _add(conn, metrics_tally_jobs, list(groups.values()), ("jobs", "started"))
    counts = [{"metric": m, "label": label, "value": v} for (m, label), v in values.items() if v]
    _add(conn, metrics_tally, counts, ("value",))
