"""Checkpoints, run weights and the current law version.

Runs: (run_id, step) is unique instead of run_id alone, so the checkpoints of one training run
share its run_id; a weight per row. Law versions: `current_revision`, the family revision at
which a version was made current; a form's current version is the one with the largest (a fit
with warnings is stored without one). Existing versions keep the newest as current.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# A NULL step is a finished run; unique indexes treat NULLs as distinct, so index a sentinel.
STEP_KEY = sa.text("coalesce(step, -1)")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_family_run_id", type_="unique")
        batch.add_column(sa.Column("weight", sa.Float, nullable=True))
    op.create_index(
        "uq_runs_family_run_step", "runs", ["family_id", "run_id", STEP_KEY], unique=True
    )
    op.create_index("ix_runs_family_run_id", "runs", ["family_id", "run_id"])
    with op.batch_alter_table("law_versions") as batch:
        batch.add_column(sa.Column("current_revision", sa.BigInteger, nullable=True))
    # Versions are numbered from 1 and every write bumps the family revision, so a version
    # number is below any revision a later promotion records: the newest stays current.
    op.execute("UPDATE law_versions SET current_revision = version")


def downgrade() -> None:
    with op.batch_alter_table("law_versions") as batch:
        batch.drop_column("current_revision")
    op.drop_index("ix_runs_family_run_id", "runs")
    op.drop_index("uq_runs_family_run_step", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("weight")
        batch.create_unique_constraint("uq_runs_family_run_id", ["family_id", "run_id"])
