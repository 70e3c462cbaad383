"""The store: every write is one transaction; law versions are append-only.

Concurrent writers to one family serialise on its row (the revision bump comes first in each
write transaction) and callers may pass the revision they expect (Conflict otherwise), so no
update is lost and a crash leaves either the old or the new state.

Long-running operations change by compare-and-set: every UPDATE names, in its WHERE, the state
it expects (not done; or the state, owner and attempt it read), so two servers never both
finish or both take over one operation, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from planner.catalog import CatalogFamily
from planner.forms import law_mapping
from server.store.errors import AlreadyExists, Conflict, NotFound, OperationDone
from server.store.records import (
    DONE_STATES,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STATES,
    SUCCEEDED,
    FamilyRecord,
    FitRecord,
    LawRecord,
    LawRef,
    OperationRecord,
    RunRecord,
)
from server.store.schema import families, law_versions, meta, operations, runs

MIGRATIONS = Path(__file__).parent / "migrations"
CATALOG_KEY = "catalog_loaded"
WRITE_OPTION = "planner_write"
_IN_CHUNK = 500
SETUP_LOCK_KEY = 0x706C616E6E6572  # "planner": any constant shared by all replicas
# Sorted so each statement's SQL, and so its cache key, is the same every time.
_DONE = sorted(DONE_STATES)
_LIVE = (QUEUED, RUNNING)


def create_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, NORMAL sync, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy, not the sqlite3 module, decides where transactions begin (below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Reads get one snapshot for all their statements; writes take the write lock up
            # front, so a transaction that reads before it writes cannot lose a race.
            immediate = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    # pre_ping: a connection the database dropped (a restart, a failover) is replaced, not used.
    return sa.create_engine(parsed, pool_pre_ping=True)


def _enable_wal(cursor: Any, patience: float = 30.0) -> None:
    """Switch a SQLite file to WAL (it stays so). The switch needs the file to itself and
    SQLite answers "database is locked" at once rather than waiting, so servers opening a
    fresh file together retry. An in-memory database keeps its own mode."""
    deadline = time.monotonic() + patience
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        if mode in ("wal", "memory"):
            return
        raise sqlite3.OperationalError(f"cannot switch the database to WAL (it is in {mode})")


class Store:
    """Families, their runs, their law versions and long-running operations in one SQL
    database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        # SQLite's BEGIN already reads one snapshot; PostgreSQL's default (READ COMMITTED) takes
        # a new one per statement, so a read of a family and then its laws could straddle a
        # delete. REPEATABLE READ gives reads one snapshot (read-only: they never conflict).
        self._read_options: dict[str, Any] = (
            {}
            if self.engine.dialect.name == "sqlite"
            else {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (committed on success, rolled back on any error)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction: every statement sees the same snapshot."""
        with self.engine.connect() as conn:
            conn.execution_options(**self._read_options)
            with conn.begin():
                yield conn

    # -- set-up -------------------------------------------------------------------------------

    def _lock_setup(self, conn: Connection) -> None:
        """Replicas starting together on a fresh PostgreSQL database take turns to migrate and
        seed (until the transaction ends); SQLite's BEGIN IMMEDIATE already does so."""
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SETUP_LOCK_KEY)))

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write() as connection:
            self._lock_setup(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def seed_catalog(self, catalog: Iterable[CatalogFamily]) -> bool:
        """Load the published catalogue once per database; False if it was already loaded."""
        with self._write() as conn:
            self._lock_setup(conn)
            if conn.execute(sa.select(meta.c.value).where(meta.c.key == CATALOG_KEY)).first():
                return False
            now = time.time()
            for entry in catalog:
                if self._family_row(conn, entry.name, lock=False) is not None:
                    continue  # a user family of the same name wins
                family_id = self._insert_family(
                    conn,
                    entry.name,
                    entry.description,
                    entry.param_convention,
                    entry.flops_per_param_token,
                    now,
                    entry.metric,
                )
                for law in entry.laws:
                    self._insert_law(
                        conn,
                        family_id,
                        law.form,
                        law_mapping(law.law()),
                        "published",
                        law.citation,
                        law.note,
                        now,
                        current_revision=1,
                    )
            conn.execute(sa.insert(meta).values(key=CATALOG_KEY, value=str(now)))
            return True

    # -- families -----------------------------------------------------------------------------

    def create_family(
        self,
        name: str,
        description: str,
        param_convention: str,
        flops_per_param_token: float,
        metric: str = "",
    ) -> FamilyRecord:
        with self._write() as conn:
            if self._family_row(conn, name, lock=False) is not None:
                raise AlreadyExists(f"family {name!r} already exists", field="family.name")
            try:
                self._insert_family(
                    conn,
                    name,
                    description,
                    param_convention,
                    flops_per_param_token,
                    time.time(),
                    metric,
                )
            except sa.exc.IntegrityError as exc:
                raise AlreadyExists(f"family {name!r} already exists", "family.name") from exc
            return self._family_record(conn, name)

    def get_family(self, name: str) -> FamilyRecord:
        with self._read() as conn:
            return self._family_record(conn, name)

    def list_families(self, limit: int, after: str | None) -> list[FamilyRecord]:
        """Up to `limit` families in name order, starting after the name `after`."""
        query = sa.select(families.c.name).order_by(families.c.name).limit(limit)
        if after is not None:
            query = query.where(families.c.name > after)
        with self._read() as conn:
            names = conn.execute(query).scalars().all()
            return [self._family_record(conn, name) for name in names]

    def delete_family(self, name: str, expected_revision: int | None) -> None:
        with self._write() as conn:
            family_id = self._bump_revision(conn, name, expected_revision)
            conn.execute(sa.delete(runs).where(runs.c.family_id == family_id))
            conn.execute(sa.delete(law_versions).where(law_versions.c.family_id == family_id))
            conn.execute(sa.delete(families).where(families.c.id == family_id))

    # -- runs ---------------------------------------------------------------------------------

    def add_runs(
        self, name: str, new_runs: Sequence[RunRecord], expected_revision: int | None
    ) -> tuple[int, int, FamilyRecord]:
        """Insert runs not yet stored; identical re-adds are no-ops; changed ones abort all."""
        with self._write() as conn:
            before = self._family_row(conn, name, lock=True)
            family_id = self._bump_revision(conn, name, expected_revision)
            stored = self._runs_by_id(conn, family_id, sorted({r.run_id for r in new_runs}))
            params_of = {key[0]: row.params for key, row in stored.items()}
            fresh = []
            for index, run in enumerate(new_runs):
                # A new checkpoint of a stored run (the same row is judged below, whole).
                known = params_of.get(run.run_id, run.params)
                if run.key not in stored and known != run.params:
                    raise AlreadyExists(
                        f"run {run.run_id!r} is stored in family {name!r} with params "
                        f"{params_of[run.run_id]:g}, not {run.params:g}; checkpoints of one run "
                        "share its parameter count; nothing was added",
                        field=f"runs[{index}].params",
                    )
                existing = stored.get(run.key)
                if existing is None:
                    fresh.append(run)
                elif existing != run:
                    at = "" if run.step is None else f" at step {run.step}"
                    raise AlreadyExists(
                        f"run_id {run.run_id!r}{at} is already stored in family {name!r} with "
                        f"other values; nothing was added",
                        field=f"runs[{index}].run_id",
                    )
            if fresh:
                conn.execute(
                    sa.insert(runs),
                    [
                        {
                            "family_id": family_id,
                            "run_id": r.run_id,
                            "params": r.params,
                            "tokens": r.tokens,
                            "loss": r.loss,
                            "unique_tokens": r.unique_tokens,
                            "flops": r.flops,
                            "step": r.step,
                            "tags": dict(r.tags),
                            "weight": r.weight,
                            "lr": r.lr,
                            "batch_tokens": r.batch_tokens,
                            # NULL rather than {} when none: rows stored before 0007 read alike.
                            "metrics": dict(r.metrics) or None,
                        }
                        for r in fresh
                    ],
                )
            else:
                # Nothing changed: undo the revision bump (it still served as the row lock).
                assert before is not None
                conn.execute(
                    sa.update(families)
                    .where(families.c.id == family_id)
                    .values(revision=before.revision, updated_at=before.updated_at)
                )
            return len(fresh), len(new_runs) - len(fresh), self._family_record(conn, name)

    def delete_runs(
        self, name: str, run_ids: Sequence[str], expected_revision: int | None
    ) -> tuple[int, FamilyRecord]:
        """Delete every row (all checkpoints) of the named runs; all or nothing."""
        with self._write() as conn:
            family_id = self._bump_revision(conn, name, expected_revision)
            wanted = list(dict.fromkeys(run_ids))
            found = {key[0] for key in self._runs_by_id(conn, family_id, wanted)}
            for index, run_id in enumerate(run_ids):
                if run_id not in found:
                    raise NotFound(
                        f"family {name!r} has no run {run_id!r}; nothing was deleted",
                        field=f"run_ids[{index}]",
                    )
            deleted = 0
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                result = conn.execute(
                    sa.delete(runs).where(runs.c.family_id == family_id, runs.c.run_id.in_(chunk))
                )
                deleted += int(result.rowcount)
            return deleted, self._family_record(conn, name)

    def list_runs(self, name: str, limit: int, after_id: int) -> list[tuple[int, RunRecord]]:
        """Up to `limit` (row id, run) pairs with row id > after_id, in insertion order."""
        with self._read() as conn:
            family = self._family_row(conn, name, lock=False)
            if family is None:
                raise NotFound(f"family {name!r} not found", field="family")
            rows = conn.execute(
                sa.select(runs)
                .where(runs.c.family_id == family.id, runs.c.id > after_id)
                .order_by(runs.c.id)
                .limit(limit)
            ).all()
        return [(int(row.id), _run_record(row)) for row in rows]

    def all_runs(self, name: str) -> list[RunRecord]:
        """Every run of the family, in insertion order (one snapshot)."""
        with self._read() as conn:
            family = self._family_row(conn, name, lock=False)
            if family is None:
                raise NotFound(f"family {name!r} not found", field="family")
            rows = conn.execute(
                sa.select(runs).where(runs.c.family_id == family.id).order_by(runs.c.id)
            ).all()
        return [_run_record(row) for row in rows]

    # -- laws ---------------------------------------------------------------------------------

    def put_law(
        self,
        name: str,
        form: str,
        parameters: dict[str, float],
        method: str,
        citation: str,
        note: str,
        expected_revision: int | None,
        fit: FitRecord | None = None,
        make_current: bool = True,
        *,
        operation_id: str | None = None,
    ) -> LawRecord:
        """Store a new version; it becomes the form's current one when `make_current`.

        With `operation_id`, the same transaction marks that operation SUCCEEDED with this
        version, so a fit's law and its operation's completion are stored together or not at
        all: a retry cannot store the law twice, nor a crash leave a stored law with a running
        operation. OperationDone (nothing stored) if the operation already finished, e.g. was
        cancelled meanwhile; NotFound if there is no such operation.
        """
        with self._write() as conn:
            family_id = self._bump_revision(conn, name, expected_revision)
            revision = self._revision(conn, family_id) if make_current else None
            now = time.time()
            version = self._insert_law(
                conn, family_id, form, parameters, method, citation, note, now, fit,
                current_revision=revision,
            )  # fmt: skip
            if operation_id is not None:
                self._succeed_with_law(conn, operation_id, form, version, now)
            return self._law_record(conn, name, family_id, form, version)

    def set_current_law(
        self, name: str, form: str, version: int, expected_revision: int | None
    ) -> LawRecord:
        """Make a stored version the current one of its form."""
        with self._write() as conn:
            family_id = self._bump_revision(conn, name, expected_revision)
            exists = conn.execute(
                sa.select(law_versions.c.id).where(
                    law_versions.c.family_id == family_id,
                    law_versions.c.form == form,
                    law_versions.c.version == version,
                )
            ).first()
            if exists is None:
                raise NotFound(
                    f"family {name!r} has no version {version} of a {form} law", field="version"
                )
            conn.execute(
                sa.update(law_versions)
                .where(law_versions.c.id == exists.id)
                .values(current_revision=self._revision(conn, family_id))
            )
            return self._law_record(conn, name, family_id, form, version)

    def get_law(self, name: str, forms: Sequence[str], version: int) -> LawRecord:
        """The given version (0: the current one) of the first of `forms` the family has (with
        version 0: the first with a current version)."""
        with self._read() as conn:
            family = self._family_row(conn, name, lock=False)
            if family is None:
                raise NotFound(f"family {name!r} not found", field="family")
            newest = self._newest_versions(conn, family.id)
            wanted = forms[0] if len(forms) == 1 else " or ".join(forms)
            if version == 0:
                current = self._current_versions(conn, family.id)
                form = next((f for f in forms if f in current), None)
                if form is None:
                    held = [f for f in forms if f in newest]
                    if held:
                        raise NotFound(
                            f"family {name!r} has no current {wanted} law: its {held[0]} "
                            f"versions 1-{newest[held[0]]} were stored with warnings and not "
                            "made current; name a version, or make one current (SetCurrentLaw)",
                            field="version",
                        )
                    raise NotFound(f"family {name!r} has no {wanted} law", field="form")
                return self._law_record(conn, name, family.id, form, current[form][0])
            form = next((f for f in forms if f in newest), None)
            if form is None:
                raise NotFound(f"family {name!r} has no {wanted} law", field="form")
            if not 1 <= version <= newest[form]:
                raise NotFound(
                    f"family {name!r} has no version {version} of its {form} law "
                    f"(versions 1-{newest[form]})",
                    field="version",
                )
            return self._law_record(conn, name, family.id, form, version)

    def list_law_versions(
        self,
        name: str,
        form: str | None,
        limit: int | None = None,
        after: tuple[str, int] | None = None,
    ) -> list[LawRecord]:
        """Versions by form then version; at most `limit`, those after (form, version)."""
        with self._read() as conn:
            family = self._family_row(conn, name, lock=False)
            if family is None:
                raise NotFound(f"family {name!r} not found", field="family")
            query = (
                sa.select(law_versions)
                .where(law_versions.c.family_id == family.id)
                .order_by(law_versions.c.form, law_versions.c.version)
            )
            if form:
                query = query.where(law_versions.c.form == form)
            if after is not None:
                query = query.where(
                    sa.or_(
                        law_versions.c.form > after[0],
                        sa.and_(law_versions.c.form == after[0], law_versions.c.version > after[1]),
                    )
                )
            if limit is not None:
                query = query.limit(limit)
            current = self._current_versions(conn, family.id)
            return [
                _law_record(name, row, current.get(row.form, (0, ""))[0] == row.version)
                for row in conn.execute(query)
            ]

    # -- operations -------------------------------------------------------------------------

    def create_operation(
        self, operation_id: str, family: str, kind: str, request: bytes, owner: str
    ) -> OperationRecord:
        """A new QUEUED operation (attempt 1) that `owner` runs; AlreadyExists if the id is
        taken."""
        with self._write() as conn:
            now = time.time()
            try:
                conn.execute(
                    sa.insert(operations).values(
                        id=operation_id,
                        family=family,
                        kind=kind,
                        state=QUEUED,
                        request=request,
                        progress_stage="",
                        progress_done=0,
                        progress_total=0,
                        attempt=1,
                        owner=owner,
                        created_at=now,
                        updated_at=now,
                        heartbeat_at=now,
                    )
                )
            except sa.exc.IntegrityError as exc:
                raise AlreadyExists(
                    f"operation operations/{operation_id} already exists", field="name"
                ) from exc
            return self._operation(conn, operation_id)

    def get_operation(self, operation_id: str) -> OperationRecord:
        with self._read() as conn:
            return self._operation(conn, operation_id)

    def list_operations(
        self, family: str | None, limit: int, before: tuple[float, str] | None
    ) -> list[OperationRecord]:
        """Up to `limit` operations (of `family`, or of all when None), newest first by
        (created_at, id); `before` is the (created_at, id) of the previous page's last row."""
        query = (
            sa.select(operations)
            .order_by(operations.c.created_at.desc(), operations.c.id.desc())
            .limit(limit)
        )
        if family is not None:
            query = query.where(operations.c.family == family)
        if before is not None:
            # Keyset paging; spelt out rather than as a row-value comparison, for portability.
            created_at, operation_id = before
            query = query.where(
                sa.or_(
                    operations.c.created_at < created_at,
                    sa.and_(operations.c.created_at == created_at, operations.c.id < operation_id),
                )
            )
        with self._read() as conn:
            return [_operation_record(row) for row in conn.execute(query)]

    def update_operation(
        self,
        operation_id: str,
        state: str | None = None,
        progress: tuple[str, int, int] | None = None,
    ) -> bool:
        """Set the state (not a done one: finish_operation) and/or progress (stage, done,
        total) of an operation that is not done; False, changing nothing, if it is done or
        absent."""
        if state is not None and (state not in STATES or state in DONE_STATES):
            raise ValueError(f"update_operation takes a state not done, not {state!r}")
        with self._write() as conn:
            now = time.time()
            values: dict[str, Any] = {"updated_at": now, "heartbeat_at": now}
            if state is not None:
                values["state"] = state
            if progress is not None:
                stage, done, total = progress
                values.update(progress_stage=stage, progress_done=done, progress_total=total)
            result = conn.execute(
                sa.update(operations)
                .where(operations.c.id == operation_id, operations.c.state.not_in(_DONE))
                .values(**values)
            )
            return int(result.rowcount) == 1

    def heartbeat_operations(self, operation_ids: Sequence[str]) -> None:
        """Mark the given operations, those not done, as still being run (now)."""
        if not operation_ids:
            return  # no write lock for nothing
        with self._write() as conn:
            now = time.time()
            ids = list(dict.fromkeys(operation_ids))
            for start in range(0, len(ids), _IN_CHUNK):
                conn.execute(
                    sa.update(operations)
                    .where(
                        operations.c.id.in_(ids[start : start + _IN_CHUNK]),
                        operations.c.state.not_in(_DONE),
                    )
                    .values(heartbeat_at=now)
                )

    def finish_operation(
        self,
        operation_id: str,
        state: str,
        *,
        result: bytes | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Move an operation that is not done to the done `state`, with its result or error;
        False, changing nothing, if it already is done (or is absent)."""
        if state not in DONE_STATES:
            raise ValueError(f"finish_operation takes a done state, not {state!r}")
        with self._write() as conn:
            now = time.time()
            changed = conn.execute(
                sa.update(operations)
                .where(operations.c.id == operation_id, operations.c.state.not_in(_DONE))
                .values(
                    state=state,
                    result=result,
                    error_code=error_code,
                    error_message=error_message,
                    updated_at=now,
                    heartbeat_at=now,
                )
            )
            return int(changed.rowcount) == 1

    def interrupt_operations(self, owner: str) -> int:
        """Mark every QUEUED or RUNNING operation of `owner` INTERRUPTED (its server is shutting
        down, so another may claim them); how many."""
        with self._write() as conn:
            result = conn.execute(
                sa.update(operations)
                .where(operations.c.owner == owner, operations.c.state.in_(_LIVE))
                .values(state=INTERRUPTED, updated_at=time.time())
            )
            return int(result.rowcount)

    def claim_operations(self, owner: str, stale_before: float) -> list[OperationRecord]:
        """Take over, for `owner`, the INTERRUPTED operations and the QUEUED or RUNNING ones
        whose heartbeat is older than `stale_before` (their server died): each becomes QUEUED
        again with its attempt plus one. Oldest first; only those this call took."""
        with self._write() as conn:
            now = time.time()
            # In id order, so concurrent claimers on PostgreSQL lock rows in one order.
            candidates = conn.execute(
                sa.select(
                    operations.c.id, operations.c.state, operations.c.owner, operations.c.attempt
                )
                .where(
                    sa.or_(
                        operations.c.state == INTERRUPTED,
                        sa.and_(
                            operations.c.state.in_(_LIVE),
                            operations.c.heartbeat_at < stale_before,
                        ),
                    )
                )
                .order_by(operations.c.id)
            ).all()
            claimed = []
            for row in candidates:
                # Compare-and-set on what was read: a claimer that changed the row first wins
                # and this UPDATE (re-evaluated after its lock wait on PostgreSQL) matches none.
                # The staleness is checked again, in case the owner's heartbeat came since.
                result = conn.execute(
                    sa.update(operations)
                    .where(
                        operations.c.id == row.id,
                        operations.c.state == row.state,
                        operations.c.owner == row.owner,
                        operations.c.attempt == row.attempt,
                        sa.or_(
                            operations.c.state == INTERRUPTED,
                            operations.c.heartbeat_at < stale_before,
                        ),
                    )
                    .values(
                        state=QUEUED,
                        owner=owner,
                        attempt=operations.c.attempt + 1,
                        updated_at=now,
                        heartbeat_at=now,
                    )
                )
                if int(result.rowcount) == 1:
                    claimed.append(self._operation(conn, row.id))
        return sorted(claimed, key=lambda record: (record.created_at, record.id))

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _family_row(conn: Connection, name: str, lock: bool) -> sa.Row[Any] | None:
        query = sa.select(families).where(families.c.name == name)
        if lock:
            query = query.with_for_update()
        return conn.execute(query).first()

    @staticmethod
    def _insert_family(
        conn: Connection,
        name: str,
        description: str,
        param_convention: str,
        flops_per_param_token: float,
        now: float,
        metric: str = "",
    ) -> int:
        result = conn.execute(
            sa.insert(families).values(
                name=name,
                description=description,
                metric=metric,
                param_convention=param_convention,
                flops_per_param_token=flops_per_param_token,
                created_at=now,
                updated_at=now,
                revision=1,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    @staticmethod
    def _revision(conn: Connection, family_id: int) -> int:
        query = sa.select(families.c.revision).where(families.c.id == family_id)
        return int(conn.execute(query).scalar_one())

    def _bump_revision(self, conn: Connection, name: str, expected: int | None) -> int:
        """Lock the family row and bump its revision; NotFound / Conflict as due."""
        row = self._family_row(conn, name, lock=True)
        if row is None:
            raise NotFound(f"family {name!r} not found", field="family")
        if expected is None or row.revision == expected:
            conn.execute(
                sa.update(families)
                .where(families.c.id == row.id)
                .values(revision=row.revision + 1, updated_at=time.time())
            )
            return int(row.id)
        raise Conflict(
            f"family {name!r} is at revision {row.revision}, not the expected {expected}; "
            f"re-read it and retry",
            field="expected_revision",
        )

    @staticmethod
    def _insert_law(
        conn: Connection,
        family_id: int,
        form: str,
        parameters: dict[str, float],
        method: str,
        citation: str,
        note: str,
        now: float,
        fit: FitRecord | None = None,
        current_revision: int | None = None,
    ) -> int:
        newest = conn.execute(
            sa.select(sa.func.max(law_versions.c.version)).where(
                law_versions.c.family_id == family_id, law_versions.c.form == form
            )
        ).scalar()
        version = int(newest or 0) + 1
        try:
            conn.execute(
                sa.insert(law_versions).values(
                    family_id=family_id,
                    form=form,
                    version=version,
                    parameters=parameters,
                    method=method,
                    citation=citation,
                    note=note,
                    created_at=now,
                    current_revision=current_revision,
                    **(asdict(fit) if fit is not None else {}),
                )
            )
        except sa.exc.IntegrityError as exc:
            raise Conflict("another writer stored a law version at the same time; retry") from exc
        return version

    @staticmethod
    def _newest_versions(conn: Connection, family_id: int) -> dict[str, int]:
        """form -> its newest version."""
        rows = conn.execute(
            sa.select(law_versions.c.form, sa.func.max(law_versions.c.version))
            .where(law_versions.c.family_id == family_id)
            .group_by(law_versions.c.form)
        )
        return {form: int(version) for form, version in rows}

    @staticmethod
    def _current_versions(conn: Connection, family_id: int) -> dict[str, tuple[int, str]]:
        """form -> (current version, its method): the version made current last."""
        latest = (
            sa.select(
                law_versions.c.form,
                sa.func.max(law_versions.c.current_revision).label("current_revision"),
            )
            .where(law_versions.c.family_id == family_id)
            .group_by(law_versions.c.form)
            .subquery()
        )
        rows = conn.execute(
            sa.select(law_versions.c.form, law_versions.c.version, law_versions.c.method)
            .join(
                latest,
                sa.and_(
                    law_versions.c.form == latest.c.form,
                    law_versions.c.current_revision == latest.c.current_revision,
                ),
            )
            .where(law_versions.c.family_id == family_id)
        )
        return {row.form: (int(row.version), row.method) for row in rows}

    def _family_record(self, conn: Connection, name: str) -> FamilyRecord:
        row = self._family_row(conn, name, lock=False)
        if row is None:
            raise NotFound(f"family {name!r} not found", field="family")
        current = self._current_versions(conn, row.id)
        count = conn.execute(
            sa.select(sa.func.count()).select_from(runs).where(runs.c.family_id == row.id)
        ).scalar_one()
        return FamilyRecord(
            name=row.name,
            description=row.description,
            param_convention=row.param_convention,
            flops_per_param_token=row.flops_per_param_token,
            created_at=row.created_at,
            updated_at=row.updated_at,
            revision=int(row.revision),
            laws=tuple(LawRef(form, v, m) for form, (v, m) in sorted(current.items())),
            run_count=int(count),
            metric=row.metric,
        )

    @staticmethod
    def _runs_by_id(
        conn: Connection, family_id: int, run_ids: Sequence[str]
    ) -> dict[tuple[str, int | None], RunRecord]:
        """Every stored row of the given runs, by (run_id, step)."""
        found: dict[tuple[str, int | None], RunRecord] = {}
        for start in range(0, len(run_ids), _IN_CHUNK):
            chunk = run_ids[start : start + _IN_CHUNK]
            rows = conn.execute(
                sa.select(runs).where(runs.c.family_id == family_id, runs.c.run_id.in_(chunk))
            )
            found.update({(row.run_id, row.step): _run_record(row) for row in rows})
        return found

    @staticmethod
    def _operation(conn: Connection, operation_id: str) -> OperationRecord:
        row = conn.execute(sa.select(operations).where(operations.c.id == operation_id)).first()
        if row is None:
            raise NotFound(f"operation operations/{operation_id} not found", field="name")
        return _operation_record(row)

    @staticmethod
    def _succeed_with_law(
        conn: Connection, operation_id: str, form: str, version: int, now: float
    ) -> None:
        """Mark the operation SUCCEEDED with a law version stored in this transaction; raising
        (so rolling back that insert) if it is done already or absent."""
        changed = conn.execute(
            sa.update(operations)
            .where(operations.c.id == operation_id, operations.c.state.not_in(_DONE))
            .values(
                state=SUCCEEDED,
                law_form=form,
                law_version=version,
                updated_at=now,
                heartbeat_at=now,
            )
        )
        if int(changed.rowcount) == 1:
            return
        state = Store._operation(conn, operation_id).state  # NotFound when absent
        raise OperationDone(
            f"operation operations/{operation_id} is already {state}; its law was not stored",
            field="name",
        )

    @staticmethod
    def _law_record(
        conn: Connection, name: str, family_id: int, form: str, version: int
    ) -> LawRecord:
        row = conn.execute(
            sa.select(law_versions).where(
                law_versions.c.family_id == family_id,
                law_versions.c.form == form,
                law_versions.c.version == version,
            )
        ).one()
        current = Store._current_versions(conn, family_id).get(form, (0, ""))[0]
        return _law_record(name, row, current == version)


def _run_record(row: sa.Row[Any]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        params=row.params,
        tokens=row.tokens,
        loss=row.loss,
        unique_tokens=row.unique_tokens,
        flops=row.flops,
        step=row.step,
        tags=dict(row.tags or {}),
        weight=row.weight,
        lr=row.lr,
        batch_tokens=row.batch_tokens,
        metrics={name: float(value) for name, value in (row.metrics or {}).items()},
    )


def _law_record(name: str, row: sa.Row[Any], current: bool) -> LawRecord:
    return LawRecord(
        family=name,
        form=row.form,
        version=int(row.version),
        parameters={k: float(v) for k, v in row.parameters.items()},
        method=row.method,
        citation=row.citation,
        note=row.note,
        created_at=row.created_at,
        fit=None
        if row.diagnostics is None
        else FitRecord(
            options=dict(row.options or {}),
            run_ids=list(row.run_ids or []),
            diagnostics=dict(row.diagnostics),
            intervals={k: list(v) for k, v in (row.intervals or {}).items()},
            ensemble=[list(v) for v in (row.ensemble or [])],
        ),
        current=current,
    )


def _operation_record(row: sa.Row[Any]) -> OperationRecord:
    return OperationRecord(
        id=row.id,
        family=row.family,
        kind=row.kind,
        state=row.state,
        # Some drivers return a memoryview for a binary column.
        request=bytes(row.request),
        progress_stage=row.progress_stage,
        progress_done=int(row.progress_done),
        progress_total=int(row.progress_total),
        attempt=int(row.attempt),
        owner=row.owner,
        result=None if row.result is None else bytes(row.result),
        law_form=row.law_form,
        law_version=None if row.law_version is None else int(row.law_version),
        error_code=row.error_code,
        error_message=row.error_message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        heartbeat_at=row.heartbeat_at,
    )
