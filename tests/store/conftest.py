"""Every store test runs on SQLite and on PostgreSQL (the `database_url` fixture's engines)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.store import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    store.close()
