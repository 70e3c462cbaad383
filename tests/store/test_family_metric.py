"""Families carry what their losses measure (migration 0006), on both engines."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from planner.catalog import CATALOG
from server.store import Store, repository
from server.store.records import RunRecord

C4 = "C4 validation loss, nats/token"


def test_metric_round_trips_and_defaults_to_empty(store: Store) -> None:
    made = store.create_family("clip", "", "total", 6.0, "ImageNet zero-shot error")
    assert made.metric == "ImageNet zero-shot error"
    assert store.get_family("clip").metric == "ImageNet zero-shot error"
    assert store.create_family("plain", "", "total", 6.0).metric == ""


def test_the_catalogue_seeds_the_gadre_metric(store: Store) -> None:
    store.seed_catalog(CATALOG)
    assert store.get_family("overtraining-gadre-2024-redpajama").metric == C4
    assert store.get_family("chinchilla-hoffmann-2022").metric == ""


def _migrate_to(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(repository.MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_migration_0006_downgrades_keeping_runs_and_backfills_gadre(store: Store) -> None:
    """Down to 0005 drops the column without touching runs (SQLite must not rebuild the table:
    dropping it would cascade); up again user families read "" and Gadre's get C4."""
    store.seed_catalog(CATALOG)
    store.create_family("mine", "", "total", 6.0, "my metric")
    store.add_runs("mine", [RunRecord("r", 1e8, 2e9, 3.1)], None)
    _migrate_to(store, "0005")
    with store.engine.connect() as conn:
        columns = {column["name"] for column in sa.inspect(conn).get_columns("families")}
    assert "metric" not in columns
    store.migrate()
    assert store.get_family("mine").metric == ""
    assert [run.run_id for run in store.all_runs("mine")] == ["r"]
    assert store.get_family("overtraining-gadre-2024-refinedweb").metric == C4
