"""Named metrics per run row (`metrics`): e.g. a downstream task's loss and accuracy at a
checkpoint, what task laws are fitted to. A JSON object of name -> finite number; NULL when the
row has none, so rows stored before read as having none.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("metrics", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Native DROP COLUMN (SQLite 3.35+), as in 0006: batch mode would copy the table, and
        # the copy would lose migration 0003's unique (run_id, step) index on an expression,
        # which SQLite's reflection cannot see (0005 drops and rebuilds it around the copy).
        op.execute("ALTER TABLE runs DROP COLUMN metrics")
    else:
        op.drop_column("runs", "metrics")
