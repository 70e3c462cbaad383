"""A locked SQLite database (another writer past the busy timeout) is UNAVAILABLE: the call
changed nothing and may be retried. It once surfaced as INTERNAL (issue 10)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from server.errors import abort_for


class Aborted(Exception):
    pass


class RecordingContext:
    """The part of grpc.aio.ServicerContext that abort_for uses."""

    code: grpc.StatusCode | None = None
    details = ""

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: object) -> None:
        self.code, self.details = code, details
        raise Aborted


def locked_error(path: Path) -> sa.exc.OperationalError:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # holds the write lock
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    except sa.exc.OperationalError as error:
        return error
    finally:
        holder.close()
        engine.dispose()
    raise AssertionError("the insert should have found the database locked")


def test_a_locked_database_is_unavailable(tmp_path: Path) -> None:
    error = locked_error(tmp_path / "busy.db")
    assert "locked" in str(error.orig)
    context = RecordingContext()
    with pytest.raises(Aborted):
        asyncio.run(abort_for(context, error, "AddRuns"))
    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert "retry" in context.details and "locked" in context.details
