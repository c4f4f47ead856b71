"""api_tokens.agent: tokens that can only run jobs (``jobdock agent``)

An agent token reaches the agent routes (``/v1/agent/...``) and nothing
else; user and admin tokens reach everything but those (docs/agents.md).

Revision ID: 0018
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("agent", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("agent")
