"""Runs carry a learning rate and a batch size (migration 0005), on both engines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from server.store import AlreadyExists, Store, repository
from server.store.records import RunRecord


def _checkpoint(step: int, lr: float | None, batch: float | None = 524_288.0) -> RunRecord:
    return RunRecord("cosine", 2.5e7, 1e6 * step, 4.0 - step * 1e-5, step=step, lr=lr,
                     batch_tokens=batch)  # fmt: skip


def test_lr_and_batch_round_trip(store: Store) -> None:
    store.create_family("curves", "", "total", 6.0)
    rows = [_checkpoint(2176, 3e-4), _checkpoint(24_000, 3.0000001e-5), _checkpoint(9, 0.0, None)]
    plain = RunRecord("finished", 1e8, 2e9, 3.1)
    added, unchanged, _ = store.add_runs("curves", [*rows, plain], None)
    assert (added, unchanged) == (4, 0)
    stored = store.all_runs("curves")
    assert stored == [*rows, plain]  # values exactly as given; None stays None
    assert (stored[1].lr, stored[1].batch_tokens) == (3.0000001e-5, 524_288.0)
    assert (stored[2].lr, stored[2].batch_tokens) == (0.0, None)
    assert (stored[3].lr, stored[3].batch_tokens) == (None, None)
    assert [run for _, run in store.list_runs("curves", 10, 0)] == stored


def test_a_changed_lr_is_another_row(store: Store) -> None:
    store.create_family("changed", "", "total", 6.0)
    store.add_runs("changed", [_checkpoint(100, 3e-4)], None)
    assert store.add_runs("changed", [_checkpoint(100, 3e-4)], None)[:2] == (0, 1)
    with pytest.raises(AlreadyExists) as caught:
        store.add_runs("changed", [_checkpoint(100, 2e-4)], None)
    assert caught.value.field == "runs[0].run_id"
    with pytest.raises(AlreadyExists):
        store.add_runs("changed", [_checkpoint(100, 3e-4, batch=262_144.0)], None)


def test_migration_0005_downgrades_and_upgrades(store: Store) -> None:
    """Down to 0004 drops the two columns and keeps the rows and the (run_id, step) unique
    index (SQLite rebuilds the table to drop a column); up again they read as unset."""
    store.create_family("kept", "", "total", 6.0)
    store.add_runs("kept", [_checkpoint(100, 3e-4)], None)
    config = Config()
    config.set_main_option("script_location", str(repository.MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    with store.engine.connect() as conn:
        columns = {column["name"] for column in sa.inspect(conn).get_columns("runs")}
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"
    assert {"weight", "step"} <= columns and not {"lr", "batch_tokens"} & columns
    store.migrate()
    (run,) = store.all_runs("kept")
    assert (run.run_id, run.step, run.loss) == ("cosine", 100, 4.0 - 100 * 1e-5)
    assert (run.lr, run.batch_tokens) == (None, None)
    # Still one row per (run_id, step): the database refuses a second one.
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (family_id, run_id, params, tokens, loss, step, tags) "
                "SELECT family_id, run_id, params, tokens, loss, step, tags FROM runs"
            )
        )
