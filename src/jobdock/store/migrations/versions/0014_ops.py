"""operating: a job's trace context and its webhooks' delivery log

``trace_id`` (the submit request's X-B3-TraceId) and ``traceparent`` (the
W3C context its attempts continue) let a worker in another process join
the job's trace; ``hooks_due`` marks a job whose webhooks are owed, and
``webhook_deliveries`` records each try of each (docs/operating.md).

Revision ID: 0014
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0016"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("trace_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hooks_due", sa.Float(), nullable=True))
    op.create_index(
        "ix_jobs_hooks_due",
        "jobs",
        ["hooks_due"],
        sqlite_where=sa.text("hooks_due IS NOT NULL"),
        postgresql_where=sa.text("hooks_due IS NOT NULL"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_job", "webhook_deliveries", ["job_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_job", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_jobs_hooks_due", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("hooks_due")
        batch.drop_column("traceparent")
        batch.drop_column("trace_id")
