"""tenancy: schedule names per owner, and kill requests

Schedules were keyed by name alone, so one user's name was everyone's (a
409 told bob alice's names, and he could take one first); they are now
keyed by (owner, name). A running job may be asked to be killed at once
(``kill_requested``), not only stopped with its grace.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (
    "name",
    "owner",
    "cron",
    "tz",
    "spec",
    "overlap",
    "catchup",
    "paused",
    "created_at",
    "next_fire_at",
    "last_fire_at",
    "last_job_id",
)


def _schedules(table: str, *key: str) -> None:
    """A schedules table under another name, with ``key`` as its primary key
    (a new table and a copy: the portable way to change a primary key)."""
    op.create_table(
        table,
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
        sa.PrimaryKeyConstraint(*key),
    )
    columns = ", ".join(_COLUMNS)
    op.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM schedules")
    op.drop_table("schedules")
    op.rename_table(table, "schedules")


def upgrade() -> None:
    _schedules("schedules_by_owner", "name", "owner")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("kill_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kill_requested")
    # Names that several owners share cannot all be kept: the oldest stays.
    op.execute(
        "DELETE FROM schedules WHERE EXISTS (SELECT 1 FROM schedules AS older"
        " WHERE older.name = schedules.name AND older.created_at < schedules.created_at)"
    )
    _schedules("schedules_by_name", "name")
