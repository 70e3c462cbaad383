"""The store: every write is one transaction; law versions are append-only.

Concurrent writers to one family serialise on its row (the revision bump comes first in each
write transaction) and callers may pass the revision they expect (Conflict otherwise), so no
update is lost and a crash leaves either the old or the new state.
"""

from __future__ import annotations

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
from server.store.errors import AlreadyExists, Conflict, NotFound
from server.store.records import FamilyRecord, FitRecord, LawRecord, LawRef, RunRecord
from server.store.schema import families, law_versions, meta, runs

MIGRATIONS = Path(__file__).parent / "migrations"
CATALOG_KEY = "catalog_loaded"
WRITE_OPTION = "planner_write"
_IN_CHUNK = 500


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
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Reads get one snapshot for all their statements; writes take the write lock up
            # front, so a transaction that reads before it writes cannot lose a race.
            immediate = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    """Families, their runs and their law versions in one SQL database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

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
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- set-up -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def seed_catalog(self, catalog: Iterable[CatalogFamily]) -> bool:
        """Load the published catalogue once per database; False if it was already loaded."""
        with self._write() as conn:
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
                )
                for law in entry.laws:
                    self._insert_law(
                        conn,
                        family_id,
                        law.form,
                        law.law().to_mapping(),
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
        self, name: str, description: str, param_convention: str, flops_per_param_token: float
    ) -> FamilyRecord:
        with self._write() as conn:
            if self._family_row(conn, name, lock=False) is not None:
                raise AlreadyExists(f"family {name!r} already exists", field="family.name")
            try:
                self._insert_family(
                    conn, name, description, param_convention, flops_per_param_token, time.time()
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
    ) -> LawRecord:
        """Store a new version; it becomes the form's current one when `make_current`."""
        with self._write() as conn:
            family_id = self._bump_revision(conn, name, expected_revision)
            revision = self._revision(conn, family_id) if make_current else None
            version = self._insert_law(
                conn, family_id, form, parameters, method, citation, note, time.time(), fit,
                current_revision=revision,
            )  # fmt: skip
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

    def list_law_versions(self, name: str, form: str | None) -> list[LawRecord]:
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
            current = self._current_versions(conn, family.id)
            return [
                _law_record(name, row, current.get(row.form, (0, ""))[0] == row.version)
                for row in conn.execute(query)
            ]

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
    ) -> int:
        result = conn.execute(
            sa.insert(families).values(
                name=name,
                description=description,
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
