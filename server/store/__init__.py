"""Persistence of families, runs, law versions and long-running operations: SQLAlchemy 2 Core,
Alembic migrations."""

from server.store.errors import AlreadyExists, Conflict, NotFound, OperationDone, StoreError
from server.store.records import OperationRecord
from server.store.repository import Store

__all__ = [
    "AlreadyExists",
    "Conflict",
    "NotFound",
    "OperationDone",
    "OperationRecord",
    "Store",
    "StoreError",
]
