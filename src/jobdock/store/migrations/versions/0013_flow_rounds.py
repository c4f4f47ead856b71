"""flow rounds: a workflow run again after a failed, reverted round

``retries`` (how many times a failed round may run again) and ``round``
(the one it is in) on ``workflows``; ``workflow_rounds`` keeps each earlier
round's error and its steps as they ended.

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "workflow_rounds",
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "number"),
    )


def downgrade() -> None:
    op.drop_table("workflow_rounds")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("round")
        batch.drop_column("retries")
