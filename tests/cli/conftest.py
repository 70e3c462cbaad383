"""The CLI tests share the service tests' SQLite server: they test the client, which is the same
whatever the engine behind the server."""

import pytest

from tests.service.conftest import sqlite_server
from tests.service.server_process import ServerProcess

__all__ = ["server", "sqlite_server"]


@pytest.fixture(scope="session")
def server(sqlite_server: ServerProcess) -> ServerProcess:
    return sqlite_server
