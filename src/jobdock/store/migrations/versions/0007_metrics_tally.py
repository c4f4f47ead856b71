"""what deleted jobs contributed to the metrics

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metrics_tally_jobs",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("runtime", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("started", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "metrics_tally",
        sa.Column("metric", sa.String(length=32), primary_key=True),
        sa.Column("label", sa.String(length=32), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metrics_tally")
    op.drop_table("metrics_tally_jobs")
