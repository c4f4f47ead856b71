"""the uid each owner's process jobs run as

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_identities",
        sa.Column("owner", sa.String(length=128), primary_key=True),
        sa.Column("uid", sa.BigInteger(), nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("job_identities")
