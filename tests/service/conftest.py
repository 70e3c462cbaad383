"""One real server for the service tests (it costs a few seconds to start)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import PlannerClient
from tests.conftest import ENGINES
from tests.postgres_cluster import PostgresCluster
from tests.service.server_process import ServerProcess


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server on SQLite (the CLI tests use only this one)."""
    database = tmp_path_factory.mktemp("service") / "planner.db"
    with ServerProcess(database) as process:
        yield process


@pytest.fixture(scope="session", params=ENGINES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The shared server, once on SQLite and once on PostgreSQL: every service test that uses
    it runs on both engines."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_server")
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    database = tmp_path_factory.mktemp("service-pg") / "planner.db"
    with ServerProcess(database, database_url=cluster.new_database()) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[PlannerClient]:
    with PlannerClient(server.target, timeout=30) as planner:
        yield planner


@pytest.fixture
def family_name(request: pytest.FixtureRequest) -> str:
    """A family name unique to the test."""
    return "t-" + re.sub(r"[^a-z0-9.-]+", "-", request.node.name.lower())[:90]


@pytest.fixture
def data_dir(shared_data: Path) -> Path:
    return shared_data
