"""Run rows carry named metrics (migration 0007), on both engines."""

from __future__ import annotations

import json
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from server.store import AlreadyExists, Store, repository
from server.store.records import RunRecord

# Values whose shortest decimal forms are long, tiny, huge or negative: a JSON round trip that
# rounded (or a column of single precision) would change one of them.
AWKWARD = {
    "mmlu_avg_test_bpb": 0.7501562439156164,
    "mmlu_avg_test_acc": 0.1 + 0.2,
    "tiny": 5e-324,
    "huge": sys.float_info.max,
    "neg/zero:x-1.y": -0.0,
    "negative": -1.2345678901234567e-7,
}


def _checkpoint(step: int, metrics: dict[str, float]) -> RunRecord:
    return RunRecord("1B-10xC", 1.28e9, 4.1e6 * step, 3.0 - step * 1e-6, step=step,
                     metrics=metrics)  # fmt: skip


def _migrate_to(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(repository.MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_metrics_round_trip_exactly(store: Store) -> None:
    store.create_family("tasks", "", "total", 6.0)
    rows = [
        _checkpoint(1000, AWKWARD),
        _checkpoint(2000, {"piqa_val_acc": 0.5}),
        _checkpoint(3000, {}),
    ]
    added, unchanged, family = store.add_runs("tasks", rows, None)
    assert (added, unchanged, family.run_count) == (3, 0, 3)
    stored = store.all_runs("tasks")
    assert stored == rows
    # Bit for bit, the sign of -0.0 included (== alone would not see it).
    assert [repr(v) for v in stored[0].metrics.values()] == [
        repr(AWKWARD[k]) for k in stored[0].metrics
    ]
    assert all(type(v) is float for v in stored[0].metrics.values())
    assert stored[2].metrics == {}
    assert [run for _, run in store.list_runs("tasks", 10, 0)] == stored


def test_rows_without_metrics_store_null(store: Store) -> None:
    """SQL NULL, not JSON null or {}: rows stored before 0007 and rows without metrics are
    alike."""
    store.create_family("plain", "", "total", 6.0)
    store.add_runs("plain", [RunRecord("r", 1e8, 2e9, 3.1), _checkpoint(5, {"a": 1.0})], None)
    with store.engine.connect() as conn:
        cells = conn.execute(sa.text("SELECT metrics IS NULL, metrics FROM runs ORDER BY id")).all()
    assert bool(cells[0][0]) is True
    assert bool(cells[1][0]) is False
    stored = cells[1][1]
    # SQLite hands back the JSON text; psycopg decodes PostgreSQL's json into a dict.
    assert (json.loads(stored) if isinstance(stored, str) else stored) == {"a": 1.0}


def test_changed_metrics_are_other_values(store: Store) -> None:
    store.create_family("changed", "", "total", 6.0)
    store.add_runs("changed", [_checkpoint(100, {"a": 0.25, "b": 1.0})], None)
    # The same metrics in another order: the same row, not re-added.
    assert store.add_runs("changed", [_checkpoint(100, {"b": 1.0, "a": 0.25})], None)[:2] == (0, 1)
    for other in ({"a": 0.25}, {"a": 0.25, "b": 1.0, "c": 2.0}, {"a": 0.2500001, "b": 1.0}, {}):
        with pytest.raises(AlreadyExists) as caught:
            store.add_runs("changed", [_checkpoint(100, other)], None)
        assert caught.value.field == "runs[0].run_id"
    assert store.all_runs("changed") == [_checkpoint(100, {"a": 0.25, "b": 1.0})]


def test_migration_0007_downgrades_and_upgrades(store: Store) -> None:
    """Down to 0006 drops the column and keeps the rows and the (run_id, step) unique index;
    up again they read as having no metrics."""
    store.create_family("kept", "", "total", 6.0)
    store.add_runs("kept", [_checkpoint(100, {"a": 0.5}), RunRecord("r", 1e8, 2e9, 3.1)], None)
    _migrate_to(store, "0006")
    with store.engine.connect() as conn:
        columns = {column["name"] for column in sa.inspect(conn).get_columns("runs")}
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0006"
    assert {"lr", "batch_tokens", "weight"} <= columns and "metrics" not in columns
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
    assert store.all_runs("kept") == [_checkpoint(100, {}), RunRecord("r", 1e8, 2e9, 3.1)]
    # Still one row per (run_id, step): the database refuses a second one.
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (family_id, run_id, params, tokens, loss, step, tags) "
                "SELECT family_id, run_id, params, tokens, loss, step, tags FROM runs"
            )
        )
