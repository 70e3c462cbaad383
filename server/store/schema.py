"""Tables of the store; one schema for SQLite and PostgreSQL. Migrations build it (Alembic)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

families = sa.Table(
    "families",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("param_convention", sa.String(20), nullable=False),
    sa.Column("flops_per_param_token", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    # What the family's losses measure (migration 0006); "" when not said.
    sa.Column("metric", sa.String(200), nullable=False, default="", server_default=""),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "family_id", sa.Integer, sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("run_id", sa.String(200), nullable=False),
    sa.Column("params", sa.Float, nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("loss", sa.Float, nullable=False),
    sa.Column("unique_tokens", sa.Float, nullable=True),
    sa.Column("flops", sa.Float, nullable=True),
    sa.Column("step", sa.BigInteger, nullable=True),
    sa.Column("tags", sa.JSON, nullable=False),
    # Relative weight in fits (migration 0003); NULL means 1.
    sa.Column("weight", sa.Float, nullable=True),
    # Learning rate (at the checkpoint's step, or a finished run's peak) and batch size in
    # tokens (migration 0005); NULL when not given.
    sa.Column("lr", sa.Float, nullable=True),
    sa.Column("batch_tokens", sa.Float, nullable=True),
    # Named metrics of the row, a JSON object of name -> number (migration 0007); NULL (not
    # JSON null) when it has none.
    sa.Column("metrics", sa.JSON(none_as_null=True), nullable=True),
)
# (run_id, step) is unique: checkpoints of one run share its run_id; a NULL step is a finished
# run, indexed as -1 because unique indexes treat NULLs as distinct (migration 0003).
sa.Index(
    "uq_runs_family_run_step",
    runs.c.family_id,
    runs.c.run_id,
    sa.func.coalesce(runs.c.step, -1),
    unique=True,
)
sa.Index("ix_runs_family_run_id", runs.c.family_id, runs.c.run_id)

# Append-only but for current_revision: a form's current version is the one made current last.
law_versions = sa.Table(
    "law_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "family_id", sa.Integer, sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("form", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("citation", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Fitted versions only (migration 0002); NULL for published parameters.
    sa.Column("options", sa.JSON, nullable=True),
    sa.Column("run_ids", sa.JSON, nullable=True),
    sa.Column("diagnostics", sa.JSON, nullable=True),
    sa.Column("intervals", sa.JSON, nullable=True),
    sa.Column("ensemble", sa.JSON, nullable=True),
    # Family revision at which the version was made current (migration 0003); NULL: never was.
    sa.Column("current_revision", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("family_id", "form", "version", name="uq_law_versions_version"),
)

# Long-running operations (migration 0004). `family` is a name, not a key: an operation's
# history outlives a deleted family.
operations = sa.Table(
    "operations",
    metadata,
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
sa.Index("ix_operations_family_created_at", operations.c.family, operations.c.created_at)
sa.Index("ix_operations_state", operations.c.state)

# Key-value facts about the database itself (e.g. whether the catalogue was loaded).
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
