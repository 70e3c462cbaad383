"""Long-running operations in the store: round trips, keyset paging, compare-and-set finishing,
a fit's law stored atomically with its operation's success, interruption and take-over."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from server.store import AlreadyExists, NotFound, OperationDone, Store, repository
from server.store.records import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    OperationRecord,
)

PARAMS = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.36}


class Clock:
    """Stands in for the time module in the repository, so timestamps are the test's."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(1000.0)
    monkeypatch.setattr(repository, "time", clock)
    return clock


def create(store: Store, operation_id: str, family: str = "fam", owner: str = "a") -> None:
    store.create_operation(operation_id, family, "fit", b"request", owner)


def test_create_and_get_round_trip(store: Store, clock: Clock) -> None:
    request = b"\x00\xff serialized \x80"  # not text: the store must keep it byte for byte
    created = store.create_operation("0" * 32, "fam", "backtest", request, "server-1")
    expected = OperationRecord(
        id="0" * 32,
        family="fam",
        kind="backtest",
        state=QUEUED,
        request=request,
        progress_stage="",
        progress_done=0,
        progress_total=0,
        attempt=1,
        owner="server-1",
        result=None,
        law_form=None,
        law_version=None,
        error_code=None,
        error_message=None,
        created_at=1000.0,
        updated_at=1000.0,
        heartbeat_at=1000.0,
    )
    assert created == expected
    assert store.get_operation("0" * 32) == expected
    assert not created.done


def test_a_taken_id_already_exists(store: Store, clock: Clock) -> None:
    create(store, "dup")
    with pytest.raises(AlreadyExists) as caught:
        store.create_operation("dup", "other", "fit", b"x", "b")
    assert caught.value.field == "name"
    assert store.get_operation("dup").family == "fam"


def test_an_absent_operation_is_not_found_on_field_name(store: Store) -> None:
    with pytest.raises(NotFound) as caught:
        store.get_operation("missing")
    assert caught.value.field == "name"
    assert "operations/missing" in caught.value.message


def test_paging_is_newest_first_with_ties_broken_by_id(store: Store, clock: Clock) -> None:
    # Created out of id order; three share created_at 2.0 and two share 3.0.
    for operation_id, created_at in [
        ("c", 2.0),
        ("a", 2.0),
        ("g", 1.0),
        ("b", 3.0),
        ("e", 2.0),
        ("d", 3.0),
        ("f", 4.0),
    ]:
        clock.now = created_at
        create(store, operation_id)
    clock.now = 2.0
    create(store, "x", family="other")

    pages: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        page = store.list_operations("fam", 3, before)
        if not page:
            break
        pages.append([record.id for record in page])
        before = (page[-1].created_at, page[-1].id)
    assert pages == [["f", "d", "b"], ["e", "c", "a"], ["g"]]

    everything = [record.id for record in store.list_operations(None, 100, None)]
    assert everything == ["f", "d", "b", "x", "e", "c", "a", "g"]
    assert [r.id for r in store.list_operations(None, 2, (2.0, "x"))] == ["e", "c"]
    assert store.list_operations("nobody", 10, None) == []


def test_update_sets_state_and_progress_until_done(store: Store, clock: Clock) -> None:
    create(store, "op")
    clock.now = 1005.0
    assert store.update_operation("op", state=RUNNING) is True
    clock.now = 1010.0
    assert store.update_operation("op", progress=("bootstrap", 3, 20)) is True
    record = store.get_operation("op")
    assert (record.state, record.progress_stage, record.progress_done) == (RUNNING, "bootstrap", 3)
    assert (record.progress_total, record.updated_at, record.heartbeat_at) == (20, 1010.0, 1010.0)
    assert record.created_at == 1000.0

    assert store.finish_operation("op", CANCELLED) is True
    clock.now = 1020.0
    assert store.update_operation("op", state=RUNNING, progress=("fit", 4, 20)) is False
    after = store.get_operation("op")
    assert after.state == CANCELLED and after.done
    assert (after.progress_stage, after.progress_done, after.updated_at) == ("bootstrap", 3, 1010.0)
    assert store.update_operation("missing", state=RUNNING) is False


def test_update_refuses_done_and_unknown_states(store: Store, clock: Clock) -> None:
    create(store, "op")
    for state in (SUCCEEDED, "BOGUS"):
        with pytest.raises(ValueError):
            store.update_operation("op", state=state)
    assert store.get_operation("op").state == QUEUED


def test_finish_is_compare_and_set(store: Store, clock: Clock) -> None:
    create(store, "op")
    clock.now = 1001.0
    assert store.finish_operation("op", FAILED, error_code="INTERNAL", error_message="boom")
    clock.now = 1002.0
    assert store.finish_operation("op", SUCCEEDED, result=b"late") is False
    record = store.get_operation("op")
    assert (record.state, record.result, record.error_code) == (FAILED, None, "INTERNAL")
    assert (record.error_message, record.updated_at) == ("boom", 1001.0)
    with pytest.raises(ValueError):
        store.finish_operation("op", RUNNING)
    assert store.finish_operation("missing", CANCELLED) is False


def test_finish_stores_a_result(store: Store, clock: Clock) -> None:
    create(store, "op")
    assert store.finish_operation("op", SUCCEEDED, result=b"\x01report") is True
    record = store.get_operation("op")
    assert (record.state, record.result, record.error_code) == (SUCCEEDED, b"\x01report", None)


def test_put_law_with_an_operation_succeeds_it_in_one_transaction(
    store: Store, clock: Clock
) -> None:
    store.create_family("fam", "", "total", 6.0)
    create(store, "op")
    store.update_operation("op", state=RUNNING)
    clock.now = 1100.0
    law = store.put_law("fam", "chinchilla", PARAMS, "vpnls", "", "", None, operation_id="op")
    assert law.version == 1
    record = store.get_operation("op")
    assert (record.state, record.law_form, record.law_version) == (SUCCEEDED, "chinchilla", 1)
    assert record.updated_at == 1100.0

    # A retry of the same fit must not store a second version.
    revision = store.get_family("fam").revision
    with pytest.raises(OperationDone) as caught:
        store.put_law("fam", "chinchilla", PARAMS, "vpnls", "", "", None, operation_id="op")
    assert caught.value.field == "name" and SUCCEEDED in caught.value.message
    assert len(store.list_law_versions("fam", None)) == 1
    assert store.get_family("fam").revision == revision


def test_put_law_for_a_cancelled_operation_stores_nothing(store: Store, clock: Clock) -> None:
    store.create_family("fam", "", "total", 6.0)
    store.put_law("fam", "chinchilla", PARAMS, "published", "", "", None)
    create(store, "op")
    assert store.finish_operation("op", CANCELLED, error_message="cancelled by caller")
    revision = store.get_family("fam").revision
    with pytest.raises(OperationDone) as caught:
        store.put_law("fam", "chinchilla", PARAMS, "vpnls", "", "", None, operation_id="op")
    assert caught.value.field == "name"
    assert "operations/op" in caught.value.message and CANCELLED in caught.value.message
    assert [v.version for v in store.list_law_versions("fam", None)] == [1]
    assert store.get_family("fam").revision == revision
    record = store.get_operation("op")
    assert (record.state, record.law_version) == (CANCELLED, None)


def test_put_law_for_an_absent_operation_stores_nothing(store: Store, clock: Clock) -> None:
    store.create_family("fam", "", "total", 6.0)
    with pytest.raises(NotFound) as caught:
        store.put_law("fam", "chinchilla", PARAMS, "vpnls", "", "", None, operation_id="nope")
    assert caught.value.field == "name"
    assert store.list_law_versions("fam", None) == []


def test_interrupt_touches_only_the_owners_live_operations(store: Store, clock: Clock) -> None:
    for operation_id, owner in [("q", "a"), ("r", "a"), ("s", "a"), ("i", "a"), ("other", "b")]:
        create(store, operation_id, owner=owner)
    store.update_operation("r", state=RUNNING)
    store.update_operation("i", state=INTERRUPTED)
    store.finish_operation("s", SUCCEEDED)
    store.update_operation("other", state=RUNNING)
    clock.now = 1050.0
    assert store.interrupt_operations("a") == 2
    states = {r.id: (r.state, r.owner) for r in store.list_operations(None, 10, None)}
    assert states == {
        "q": (INTERRUPTED, "a"),
        "r": (INTERRUPTED, "a"),
        "s": (SUCCEEDED, "a"),
        "i": (INTERRUPTED, "a"),
        "other": (RUNNING, "b"),
    }
    assert store.get_operation("q").updated_at == 1050.0
    assert store.interrupt_operations("a") == 0


def test_heartbeat_refreshes_live_operations_only(store: Store, clock: Clock) -> None:
    create(store, "live")
    create(store, "done")
    store.finish_operation("done", FAILED)
    clock.now = 1200.0
    store.heartbeat_operations(["live", "done", "missing"])
    store.heartbeat_operations([])
    live, done = store.get_operation("live"), store.get_operation("done")
    assert (live.heartbeat_at, live.updated_at) == (1200.0, 1000.0)
    assert done.heartbeat_at == 1000.0


def test_claim_takes_interrupted_and_stale_operations_once(store: Store, clock: Clock) -> None:
    clock.now = 1000.0
    for operation_id, owner in [
        ("interrupted", "a"),
        ("stale-running", "b"),
        ("stale-queued", "b"),
        ("stale-done", "b"),
    ]:
        create(store, operation_id, owner=owner)
    store.interrupt_operations("a")
    store.update_operation("stale-running", state=RUNNING)
    store.finish_operation("stale-done", CANCELLED)
    clock.now = 1001.0
    create(store, "fresh", owner="c")
    store.update_operation("fresh", state=RUNNING)
    clock.now = 1100.0
    store.heartbeat_operations(["fresh"])

    clock.now = 1130.0
    claimed = store.claim_operations("d", stale_before=1100.0)
    assert [r.id for r in claimed] == ["interrupted", "stale-queued", "stale-running"]
    for record in claimed:
        assert (record.state, record.owner, record.attempt) == (QUEUED, "d", 2)
        assert record.heartbeat_at == record.updated_at == 1130.0
    fresh = store.get_operation("fresh")
    assert (fresh.state, fresh.owner, fresh.attempt) == (RUNNING, "c", 1)
    assert store.get_operation("stale-done").state == CANCELLED

    assert store.claim_operations("e", stale_before=1100.0) == []
    assert {r.owner for r in store.list_operations(None, 10, None)} == {"b", "c", "d"}


def test_concurrent_claims_never_share_an_operation(database_url: str) -> None:
    url = database_url
    setup = Store(url)
    setup.migrate()
    ids = [f"op{i:02d}" for i in range(30)]
    for operation_id in ids:
        create(setup, operation_id)
    assert setup.interrupt_operations("a") == 30
    results: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claim(owner: str) -> None:
        store = Store(url)  # its own engine, as another server would have
        start.wait()
        results[owner] = [r.id for r in store.claim_operations(owner, stale_before=0.0)]
        store.close()

    threads = [threading.Thread(target=claim, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [operation_id for got in results.values() for operation_id in got]
    assert sorted(claimed) == ids  # each taken exactly once
    for owner, got in results.items():
        assert all(setup.get_operation(i).owner == owner for i in got)
    assert {setup.get_operation(i).attempt for i in ids} == {2}


def test_migration_0004_downgrades_and_upgrades(store: Store, clock: Clock) -> None:
    store.create_family("kept", "", "total", 6.0)
    create(store, "op")
    config = Config()
    config.set_main_option("script_location", str(repository.MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert "operations" not in inspector.get_table_names()
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
        # Read raw: the store's queries are written for the head schema (0006 adds a column).
        assert conn.exec_driver_sql("SELECT name FROM families").scalar() == "kept"
    store.migrate()
    with store.engine.connect() as conn:
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("operations")}
    assert indexes == {"ix_operations_family_created_at", "ix_operations_state"}
    assert store.list_operations(None, 10, None) == []
