"""attempts: inputs, what the attempt really ran (issue 19)

The image's digest beside the reference the spec gave, the resolved command
and entrypoint, env names (never values), stdin's size and sha256, working
directory, user, limits, isolation and runtime, as JSON, written when the
attempt starts: ``jobdock repro`` runs exactly it again from these.

Revision ID: 0017
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("inputs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("inputs")
