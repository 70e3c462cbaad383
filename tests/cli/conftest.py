"""The CLI tests share the service tests' server."""

from tests.service.conftest import server

__all__ = ["server"]
