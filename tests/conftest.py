"""Shared test fixtures: paths and the published reference parameter sets (LAWS.md §11.2)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.laws import ChinchillaLaw
from tests.postgres_cluster import REQUIRE_VARIABLE, PostgresCluster, find_binaries

# The store engines every store and service test runs on.
ENGINES = ("sqlite", "postgresql")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# LAWS.md §11.2 parameter sets, as printed there.
HOFFMANN_ROUNDED = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
HOFFMANN_TEX = ChinchillaLaw(E=1.693374, A=406.401, B=410.723, alpha=0.33917084, beta=0.2849083)
EPOCH = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"published data not found at {SHARED_DATA} (shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session; skipped where PostgreSQL is not installed,
    failed instead when TEST_POSTGRES=require (as `.ci/run` sets)."""
    binaries = find_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)"
        if os.environ.get(REQUIRE_VARIABLE) == "require":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster(binaries)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each engine in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'planner.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()
