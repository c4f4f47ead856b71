"""Claiming: a worker takes queued jobs, each as a new attempt under a lease,
highest priority then oldest first, within the labels it has and the
concurrency limits (docs/scheduling.md); scheduled and retrying jobs that
are due are queued first.

Statements on the path of every job are :class:`Prepared`. On PostgreSQL
the claim locks its rows ``FOR UPDATE SKIP LOCKED``, and a claim under
limits counts running jobs under an advisory lock. Imports the
foundation, the schema and statements.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, text, update

from jobdock.models import JobState, Reason
from jobdock.models.records import Claim, Limits
from jobdock.store.prepared import Prepared
from jobdock.store.records import invalid_record_message, load_spec
from jobdock.store.schema import attempts, jobs
from jobdock.store.statements import announce, param

HOST = socket.gethostname()

_RUNNING = JobState.RUNNING.value
_QUEUED = JobState.QUEUED.value

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
    oldest = oldest.limit(param("limit"))
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
    return or_(jobs.c.start_by.is_(None), jobs.c.start_by > param("now"))


def _claiming(claim: Any) -> Any:
    """The claim's UPDATE of the chosen rows: a new attempt under a lease."""
    return (
        claim.where(jobs.c.state == _QUEUED)
        .values(
            state=_RUNNING,
            attempt=jobs.c.attempt + 1,
            worker_id=param("worker_id"),
            lease_expires_at=param("lease_until"),
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
            jobs.c.trace_id,
            jobs.c.traceparent,
        )
    )


_CLAIM = Prepared(_claim_statement)
_INSERT_ATTEMPT = Prepared(
    lambda _: insert(attempts).values(
        job_id=param("job_id"),
        number=param("number"),
        worker_id=param("worker_id"),
        host=param("host"),
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
                trace_id=row.trace_id,
                traceparent=row.traceparent,
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


#: The label keys that queued jobs require, each key once.
_REQUIRED_KEYS = {
    "sqlite": "SELECT DISTINCT r.key FROM jobs, json_each(jobs.requires) AS r",
    "postgresql": "SELECT DISTINCT r.key FROM jobs,"
    " jsonb_object_keys(CAST(jobs.requires AS jsonb)) AS r(key)",
}


def wanted_labels(conn: Connection, keys: Sequence[str], labels: str, now: float) -> set[str]:
    """Which of the label ``keys`` a queued job requires that a worker with
    ``labels`` (a JSON object) could claim now."""
    dialect = conn.dialect.name
    query = text(
        f"{_REQUIRED_KEYS[dialect]} WHERE jobs.state = :queued AND jobs.requires IS NOT NULL"
        f" AND {_HAS_LABELS[dialect]} AND (jobs.start_by IS NULL OR jobs.start_by > :now)"
    )
    found = conn.execute(query, {"queued": _QUEUED, "labels": labels, "now": now}).scalars()
    return set(found) & set(keys)


#: Scheduled and retrying jobs whose time has come become queued (only
#: they have a not_before: see schema.py).
_PROMOTE = Prepared(
    lambda _: (
        update(jobs).where(jobs.c.not_before <= param("now")).values(state=_QUEUED, not_before=None)
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


#: What a key counts against: (key, owner), or (key, None) for a shared key.
_Scope = tuple[str, str | None]


def _key_scope(key: str, owner: str, shared: frozenset[str]) -> _Scope:
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
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(LIMITS_LOCK)))
    limit = _within_max_running(conn, limit, limits.max_running)
    if limit <= 0:
        return []
    by_key = _running_by_key(conn, limits.shared)
    by_owner = _running_by_owner(conn) if limits.per_owner is not None else {}
    found = _candidates(conn, limit, limits, params)
    chosen = _choose(found, limits, by_key, by_owner)
    if not chosen:
        return []
    claim = _claiming(update(jobs).where(jobs.c.seq.in_(chosen)))
    # Only the claim's own parameters: Core would take any other that names
    # a column (labels!) as a value to SET.
    lease = {"worker_id": params["worker_id"], "lease_until": params["lease_until"]}
    return list(conn.execute(claim, lease).all())


def _within_max_running(conn: Connection, limit: int, max_running: int | None) -> int:
    """How many a claim may take: ``limit``, or fewer if the store-wide
    limit leaves less room."""
    if max_running is None:
        return limit
    running = conn.execute(select(func.count()).where(jobs.c.state == _RUNNING)).scalar()
    return min(limit, max_running - int(running or 0))


def _running_by_key(conn: Connection, shared: frozenset[str]) -> dict[_Scope, int]:
    """How many jobs run under each key, per owner (all owners together for
    a shared key)."""
    by_key: dict[_Scope, int] = {}
    for key, owner, count in conn.execute(
        select(jobs.c.concurrency_key, jobs.c.owner, func.count())
        .where(jobs.c.state == _RUNNING, jobs.c.concurrency_key.is_not(None))
        .group_by(jobs.c.concurrency_key, jobs.c.owner)
    ):
        counted = _key_scope(key, owner, shared)
        by_key[counted] = by_key.get(counted, 0) + int(count)
    return by_key


def _candidates(conn: Connection, limit: int, limits: Limits, params: dict[str, Any]) -> list[Any]:
    """Queued jobs the worker may run, in claim order, whose key (and owner)
    had room when the claim began (locked on PostgreSQL)."""
    dialect = conn.dialect.name
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
    return list(
        conn.execute(
            candidates,
            {
                "labels": params["labels"],
                "now": params["now"],
                "shared": json.dumps(dict.fromkeys(limits.shared, 1)),
                "limits": json.dumps(dict(limits.per_key)),
            },
        ).all()
    )


def _choose(
    found: Sequence[Any],
    limits: Limits,
    by_key: dict[_Scope, int],
    by_owner: dict[str, int],
) -> list[int]:
    """The seqs of the candidates to take, in order, each while its key and
    owner still have room counting those taken before it."""
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
    return chosen


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
