"""Learning rate and batch size per run row.

`lr`: the learning rate at a checkpoint's step, or a finished run's peak learning rate (what the
loss-curve laws and the Step Law are fitted to); `batch_tokens`: the batch size in tokens. Both
nullable: rows stored before (and rows without them) keep NULL.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lr", sa.Float, nullable=True))
        batch.add_column(sa.Column("batch_tokens", sa.Float, nullable=True))


# Migration 0003's unique index on an expression, which SQLite's batch mode cannot reflect: a
# table it copies to drop columns would lose it silently, so it is dropped and rebuilt around.
STEP_KEY = sa.text("coalesce(step, -1)")


def downgrade() -> None:
    op.drop_index("uq_runs_family_run_step", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("batch_tokens")
        batch.drop_column("lr")
    op.create_index(
        "uq_runs_family_run_step", "runs", ["family_id", "run_id", STEP_KEY], unique=True
    )
