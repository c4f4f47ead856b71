"""stdin_chunks: a job's stdin, streamed after its submit

A job submitted with ``stdin_stream`` gets its input from
``POST /v1/jobs/ID/stdin`` as the client reads it; the pieces are kept here
until the job finishes, so that a retry reads the whole input again.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stdin_chunks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("eof", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("stdin_chunks")
