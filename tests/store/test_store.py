"""The store on both engines: migrations, the one-time catalogue load, revisions under
concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from planner.catalog import CATALOG
from server.store import Conflict, NotFound, Store
from server.store.records import RunRecord


def test_migrations_are_idempotent(store: Store) -> None:
    store.migrate()
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert {"families", "runs", "law_versions", "meta", "operations", "alembic_version"} <= tables
    assert version == "0007"


def test_sqlite_has_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db' / 'planner.db'}")
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_catalogue_loads_once(store: Store) -> None:
    assert store.seed_catalog(CATALOG) is True
    assert store.seed_catalog(CATALOG) is False
    names = [f.name for f in store.list_families(100, None)]
    assert names == sorted(entry.name for entry in CATALOG)
    store.delete_family("chinchilla-epoch-2024", None)
    assert store.seed_catalog(CATALOG) is False
    assert "chinchilla-epoch-2024" not in [f.name for f in store.list_families(100, None)]


def test_delete_removes_runs_and_laws(store: Store) -> None:
    store.create_family("gone", "", "total", 6.0)
    store.add_runs("gone", [RunRecord("a", 1e9, 2e10, 3.0)], None)
    store.put_law("gone", "chinchilla", {"E": 1.0}, "published", "", "", None)
    store.delete_family("gone", None)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM law_versions").scalar() == 0


def test_concurrent_writers_with_one_expected_revision(store: Store) -> None:
    """Eight threads race with the same expected revision: exactly one wins, none is lost."""
    revision = store.create_family("race", "", "total", 6.0).revision
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        try:
            store.add_runs("race", [RunRecord(f"r{index}", 1e9, 2e10 + index, 3.0)], revision)
            result = "won"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    family = store.get_family("race")
    assert family.run_count == 1 and family.revision == revision + 1


def test_law_versions_number_per_form(store: Store) -> None:
    store.create_family("forms", "", "total", 6.0)
    params = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.36}
    assert store.put_law("forms", "chinchilla", params, "published", "", "", None).version == 1
    assert store.put_law("forms", "chinchilla", params, "vpnls", "", "", None).version == 2
    other = {"E": 1.8, "a": 200.0, "b": 300.0, "eta": 0.13}
    assert store.put_law("forms", "overtraining", other, "published", "", "", None).version == 1
    refs = store.get_family("forms").laws
    assert [(r.form, r.version, r.method) for r in refs] == [
        ("chinchilla", 2, "vpnls"),
        ("overtraining", 1, "published"),
    ]


def test_reads_during_create_and_delete_see_consistent_snapshots(store: Store) -> None:
    """Readers racing a writer that creates and deletes a family: lists never fail and a law
    read either finds the whole family or NotFound, never a half-deleted state."""
    store.seed_catalog(CATALOG)
    params = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.36}
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(40):
                store.create_family("churn", "", "total", 6.0)
                store.put_law("churn", "chinchilla", params, "published", "", "", None)
                store.delete_family("churn", None)
        finally:
            stop.set()

    def read() -> None:
        while not stop.is_set():
            try:
                store.list_families(100, None)
                store.get_law("churn", ["chinchilla"], 0)
            except NotFound:
                pass
            except BaseException as error:
                failures.append(error)
                return

    threads = [threading.Thread(target=churn)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []


def test_replicas_starting_together_migrate_and_seed_once(database_url: str) -> None:
    """Four stores (as four replicas would) migrate and seed one fresh database at once."""
    start = threading.Barrier(4)
    seeded: list[bool] = []
    failures: list[BaseException] = []

    def replica() -> None:
        store = Store(database_url)
        try:
            start.wait()
            store.migrate()
            seeded.append(store.seed_catalog(CATALOG))
        except BaseException as error:
            failures.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sorted(seeded) == [False, False, False, True]
    store = Store(database_url)
    assert len(store.list_families(100, None)) == len(CATALOG)
    store.close()
