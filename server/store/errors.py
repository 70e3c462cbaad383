"""Store outcomes the service reports to callers with their own status codes."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's expected failures."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(StoreError):
    """No such family or law version."""


class AlreadyExists(StoreError):
    """A family of that name, or a run id with other values, is already stored."""


class Conflict(StoreError):
    """The family's revision is not the one the caller expected."""


class OperationDone(StoreError):
    """The operation already finished (e.g. was cancelled), so its result is not stored."""
