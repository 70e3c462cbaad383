"""The server's log: one JSON object per line by default (PLANNER_LOG_FORMAT=text for people),
Python warnings (numpy, scipy, cvxpy) captured into it instead of printed raw, and one access
line per planner call (logger `planner.access`)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

from pythonjsonlogger.json import JsonFormatter

FORMAT_VARIABLE = "PLANNER_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"

access = logging.getLogger("planner.access")


def configure(log_format: str | None = None) -> QueueListener:
    """Log to stderr in `log_format` ("json" or "text"; default from PLANNER_LOG_FORMAT, json).
    Called by the server and by each worker process (which inherit the environment)."""
    chosen = log_format or os.environ.get(FORMAT_VARIABLE, "json")
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"})
        )
    # Records are formatted and written by a listener thread, so a slow reader of stderr never
    # blocks the event loop on a full pipe.
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, handler)
    listener.start()
    atexit.register(_flush, listener)
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(records)]
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a `py.warnings` log record
    return listener


def _flush(listener: QueueListener) -> None:
    """Write what is still queued when the process exits."""
    with contextlib.suppress(AttributeError):  # stopped already: its thread is gone
        listener.stop()


def log_call(
    method: str, code: str, seconds: float, request_id: str, peer: str, token_name: str = ""
) -> None:
    """One access line per planner call: who called by the name of their token in the tokens
    file ("" without one), never its metadata (tokens live there)."""
    access.info(
        "call",
        extra={
            "rpc": method,
            "code": code,
            "duration_ms": round(seconds * 1e3, 3),
            "request_id": request_id,
            "peer": peer,
            "token_name": token_name,
        },
    )
