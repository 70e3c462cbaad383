"""Fit results on law versions: options, runs used, diagnostics, intervals, ensemble.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("options", "run_ids", "diagnostics", "intervals", "ensemble")


def upgrade() -> None:
    with op.batch_alter_table("law_versions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("law_versions") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
