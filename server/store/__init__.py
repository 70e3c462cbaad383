"""Persistence of families, runs and law versions: SQLAlchemy 2 Core, Alembic migrations."""

from server.store.errors import AlreadyExists, Conflict, NotFound, StoreError
from server.store.repository import Store

__all__ = ["AlreadyExists", "Conflict", "NotFound", "Store", "StoreError"]
