"""What a family's losses measure (`metric`, free text up to 200 characters; "" when not said).

Existing families read as "" but for the catalogue's Gadre et al. families, whose laws were
fitted on C4 validation loss: they get the metric a fresh database seeds them with.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# planner.catalog's Gadre families and their metric, as of this migration (not imported: a
# migration must not change when the catalogue does).
GADRE_FAMILIES = (
    "overtraining-gadre-2024-c4",
    "overtraining-gadre-2024-redpajama",
    "overtraining-gadre-2024-refinedweb",
)
C4_VALIDATION_LOSS = "C4 validation loss, nats/token"


def upgrade() -> None:
    op.add_column(
        "families", sa.Column("metric", sa.String(200), nullable=False, server_default="")
    )
    families = sa.table("families", sa.column("name", sa.String), sa.column("metric", sa.String))
    op.execute(
        families.update()
        .where(families.c.name.in_(GADRE_FAMILIES))
        .values(metric=C4_VALIDATION_LOSS)
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Native DROP COLUMN (SQLite 3.35+): batch mode would rebuild the table, and dropping
        # the old one cascades to every run and law of every family.
        op.execute("ALTER TABLE families DROP COLUMN metric")
    else:
        op.drop_column("families", "metric")
