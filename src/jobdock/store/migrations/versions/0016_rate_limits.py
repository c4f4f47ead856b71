"""api_tokens.submit_rate, submit_burst: a token's own rate limit on submits

A token may carry a rate limit of its own (``jobdock tokens create
--submit-rate``), used instead of its user's ``submit_rate`` (api/rates.py,
docs/security.md "Rate limits"). NULL: the user's.

Revision ID: 0016
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("submit_rate", sa.Float(), nullable=True))
        batch.add_column(sa.Column("submit_burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("submit_burst")
        batch.drop_column("submit_rate")
