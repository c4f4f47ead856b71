"""machines, machine_pools, leases, ix_attempts_worker: the pools autoscaler
(docs/machines.md)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pool", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("token_id", sa.String(64)),
        sa.Column("jobs_done", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("booted_at", sa.Float()),
        sa.Column("last_busy_at", sa.Float()),
        sa.Column("stopping_at", sa.Float()),
        sa.Column("stopped_at", sa.Float()),
        sa.Column("error", sa.Text()),
        sa.Column("server", sa.String(255)),
    )
    op.create_index("ix_machines_pool_state", "machines", ["pool", "state"])
    op.create_table(
        "machine_pools",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("backoff_until", sa.Float()),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_decision", sa.Text()),
        sa.Column("decided_at", sa.Float()),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_attempts_worker", "attempts", ["worker_id"])


def downgrade() -> None:
    op.drop_index("ix_attempts_worker", table_name="attempts")
    op.drop_table("leases")
    op.drop_table("machine_pools")
    op.drop_index("ix_machines_pool_state", table_name="machines")
    op.drop_table("machines")
