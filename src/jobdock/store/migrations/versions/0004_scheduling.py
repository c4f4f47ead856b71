"""scheduling: priorities, run_at, retries, idempotency, limits, deadlines,
retention, cron schedules

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _partial(name: str, columns: list[Any], where: str, unique: bool = False) -> None:
    op.create_index(
        name,
        "jobs",
        columns,
        unique=unique,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("not_before", sa.Float(), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("concurrency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("start_by", sa.Float(), nullable=True))
        batch.add_column(sa.Column("finish_by", sa.Float(), nullable=True))
        batch.add_column(sa.Column("keep_for", sa.Float(), nullable=True))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    _partial(
        "ux_jobs_idempotency_key",
        ["owner", "idempotency_key"],
        "idempotency_key IS NOT NULL",
        unique=True,
    )
    _partial("ix_jobs_finished", ["finished_at"], "finished_at IS NOT NULL")
    op.create_index("ix_jobs_claim", "jobs", ["state", sa.text("priority DESC"), "seq"])
    _partial("ix_jobs_due", ["not_before"], "not_before IS NOT NULL")
    _partial("ix_jobs_key", ["state", "concurrency_key"], "concurrency_key IS NOT NULL")
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False, server_default="anonymous"),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("catchup", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_fire_at", sa.Float(), nullable=True),
        sa.Column("last_fire_at", sa.Float(), nullable=True),
        sa.Column("last_job_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    for index in ("ix_jobs_key", "ix_jobs_due", "ix_jobs_claim", "ix_jobs_finished"):
        op.drop_index(index, "jobs")
    op.drop_index("ux_jobs_idempotency_key", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "failures",
            "keep_for",
            "finish_by",
            "start_by",
            "concurrency_limit",
            "concurrency_key",
            "idempotency_key",
            "not_before",
            "priority",
        ):
            batch.drop_column(column)
