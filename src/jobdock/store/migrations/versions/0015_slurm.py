"""attempts.engine_job, attempts.engine_state: the Slurm job of an attempt

An attempt run by the Slurm runtime records its Slurm job id, and what
Slurm says of it while it waits ('PENDING (Resources)').

Revision ID: 0015
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("engine_job", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("engine_state", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("engine_state")
        batch.drop_column("engine_job")
