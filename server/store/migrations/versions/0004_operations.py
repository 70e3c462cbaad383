"""Long-running operations: fits and backtests that outlive their caller and their server.

One row per operation: its state, serialized request, progress, the server that runs it and
its result (a fit's law version, another kind's serialized result, or an error). `family` is
the family's name, not a key, so the history outlives a deleted family.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("family", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("progress_stage", sa.String(40), nullable=False, server_default=""),
        sa.Column("progress_done", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("progress_total", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("law_form", sa.String(40), nullable=True),
        sa.Column("law_version", sa.Integer, nullable=True),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    # A family's operations newest first (ListOperations); live ones to claim or interrupt.
    op.create_index("ix_operations_family_created_at", "operations", ["family", "created_at"])
    op.create_index("ix_operations_state", "operations", ["state"])


def downgrade() -> None:
    op.drop_index("ix_operations_state", "operations")
    op.drop_index("ix_operations_family_created_at", "operations")
    op.drop_table("operations")
