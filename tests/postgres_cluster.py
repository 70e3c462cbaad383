"""A private PostgreSQL cluster on loopback for the tests: one per test session, a fresh database
per test that asks for one.

pytest-postgresql was tried first, but it runs initdb as the current user, and CI runs as root,
which initdb refuses; here the cluster is made and run by the `postgres` user (created by the
Debian package) when the tests run as root.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from tests.service.server_process import free_port

# `.ci/run` sets it: there a missing PostgreSQL fails the tests instead of skipping them.
REQUIRE_VARIABLE = "TEST_POSTGRES"
ROLE = "planner"
PREFIX = "planner-pg-"
# The pid of the test process that made a cluster: once it is gone, the cluster is an orphan.
OWNER_FILE = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(binaries: Path) -> None:
    """Stop and remove the clusters of test runs that were killed (pg_ctl daemonises the server,
    so a killed pytest leaves it running); clusters of live runs are left alone."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being made
        if _alive(owner):
            continue
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, str(binaries / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                 "stop"],
                capture_output=True,
                timeout=60,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def find_binaries() -> Path | None:
    """The newest PostgreSQL server's bin directory, or None."""
    if configured := os.environ.get("TEST_POSTGRES_BIN"):
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory, listening on 127.0.0.1 and a free port."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        sweep_orphans(binaries)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as_user, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}"
                f"\n{result.stderr}\n{log}"
            )

    def start(self) -> None:
        self._run(
            str(self.binaries / "initdb"),
            "-D",
            str(self.data),
            "-U",
            ROLE,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.resume()

    def resume(self) -> None:
        """Start the server (again) on the same data and port."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def pause(self) -> None:
        """Stop the server, keeping its data: the database goes away under its clients."""
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    def stop(self) -> None:
        try:
            self.pause()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)
