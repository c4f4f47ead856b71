"""The SQL of webhooks: which ended jobs still owe theirs (claimed by one
server at a time, for a while, so that many servers sharing a store send
each once and a server that dies mid-way leaves them to another), and the
log of every try (docs/operating.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from jobdock.models import TERMINAL_STATES, timestamp
from jobdock.models.jobs import WebhookDelivery
from jobdock.store.schema import jobs, webhook_deliveries

_ENDED = [state.value for state in TERMINAL_STATES]


def claim_webhooks(conn: Connection, now: float, until: float, limit: int) -> list[str]:
    """The ended jobs whose webhooks are due, each now claimed until ``until``
    (a conditional write per job: a job another server took is skipped)."""
    rows = conn.execute(
        select(jobs.c.id, jobs.c.hooks_due)
        .where(
            jobs.c.hooks_due.is_not(None),
            jobs.c.hooks_due <= now,
            jobs.c.state.in_(_ENDED),
        )
        .order_by(jobs.c.hooks_due)
        .limit(limit)
    ).all()
    claimed = []
    for row in rows:
        taken = conn.execute(
            update(jobs)
            .where(jobs.c.id == row.id, jobs.c.hooks_due == row.hooks_due)
            .values(hooks_due=until)
        )
        if taken.rowcount:
            claimed.append(row.id)
    return claimed


def record_delivery(conn: Connection, job_id: str, delivery: WebhookDelivery) -> None:
    """Add one try of one of the job's webhooks to its delivery log."""
    conn.execute(
        insert(webhook_deliveries).values(
            job_id=job_id,
            url=delivery.url,
            try_number=delivery.try_number,
            at=delivery.at.timestamp(),
            status=delivery.status,
            ok=delivery.ok,
            error=delivery.error,
            seconds=delivery.seconds,
        )
    )


def webhooks_sent(conn: Connection, job_id: str) -> None:
    """The job owes no more webhooks (each was sent, or gave up)."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(hooks_due=None))


def list_deliveries(conn: Connection, job_id: str) -> list[WebhookDelivery]:
    """The job's delivery log, oldest try first."""
    rows = conn.execute(
        select(webhook_deliveries)
        .where(webhook_deliveries.c.job_id == job_id)
        .order_by(webhook_deliveries.c.seq)
    ).all()
    return [
        WebhookDelivery(
            url=row.url,
            try_number=row.try_number,
            at=timestamp(row.at) or datetime.fromtimestamp(0, UTC),
            status=row.status,
            ok=bool(row.ok),
            error=row.error,
            seconds=row.seconds,
        )
        for row in rows
    ]
