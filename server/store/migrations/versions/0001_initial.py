"""Families, runs, append-only law versions and the meta table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "families",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("param_convention", sa.String(20), nullable=False),
        sa.Column("flops_per_param_token", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "family_id",
            sa.Integer,
            sa.ForeignKey("families.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("params", sa.Float, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("loss", sa.Float, nullable=False),
        sa.Column("unique_tokens", sa.Float, nullable=True),
        sa.Column("flops", sa.Float, nullable=True),
        sa.Column("step", sa.BigInteger, nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.UniqueConstraint("family_id", "run_id", name="uq_runs_family_run_id"),
    )
    op.create_table(
        "law_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "family_id",
            sa.Integer,
            sa.ForeignKey("families.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("form", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("citation", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("family_id", "form", "version", name="uq_law_versions_version"),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("law_versions")
    op.drop_table("runs")
    op.drop_table("families")
