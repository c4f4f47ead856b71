"""log times: when each chunk of output arrived

``jobdock logs --since 10m -t`` needs each chunk's arrival time (seconds
since the epoch). Chunks stored before this revision have none; they read
back with their attempt's start time (store/logs.py).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.add_column(sa.Column("at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log_chunks") as batch:
        batch.drop_column("at")
