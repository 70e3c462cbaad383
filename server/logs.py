"""The server's log: one JSON object per line by default (PLANNER_LOG_FORMAT=text for people),
Python warnings (numpy, scipy, cvxpy) captured into it instead of printed raw, and one access
line per planner call (logger `planner.access`)."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMAT_VARIABLE = "PLANNER_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"

access = logging.getLogger("planner.access")
# How often the access lines queued by calls are written.
ACCESS_FLUSH_SECONDS = 0.1
REQUEST_ID_KEY = "x-request-id"
# The request id of the call being served in this task (set on admission), so that error
# answers, which replace the trailing metadata, return it too.
REQUEST_ID: ContextVar[str] = ContextVar("planner_request_id", default="")


class Listener(QueueListener):
    """The queue listener, and the access-line writer when there is one; `stop` flushes both."""

    access_writer: AccessWriter | None = None

    def stop(self) -> None:
        global _access_writer
        if self.access_writer is not None:
            self.access_writer.stop()
            if _access_writer is self.access_writer:  # later lines go through logging again
                _access_writer = None
        super().stop()


class AccessWriter:
    """Writes the access lines in batches from one thread, a few times a second.

    There is one line per call: through the logging machinery each cost about 35 µs of the
    interpreter lock and woke the listener thread once per call, which took a quarter of the
    closed-form throughput under load. Here the event loop only appends a tuple; the lines are
    formatted (the same fields as the JSON log records) and written together, under the stream
    handler's lock so they never interleave with other records.
    """

    def __init__(self, handler: logging.StreamHandler[Any], json_lines: bool) -> None:
        self._handler = handler
        self._json = json_lines
        self._pending: deque[tuple[float, dict[str, Any]]] = deque()
        self._stopping = threading.Event()
        self._process = os.getpid()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def add(self, fields: dict[str, Any]) -> None:
        self._pending.append((time.time(), fields))  # deque.append is thread-safe

    def _run(self) -> None:
        while not self._stopping.wait(ACCESS_FLUSH_SECONDS):
            self.flush()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.flush()

    def flush(self) -> None:
        lines = []
        while self._pending:
            stamp, fields = self._pending.popleft()
            lines.append(self._line(stamp, fields))
        if not lines:
            return
        # The handler's lock: never inside another record's line; stderr closed: nothing to do.
        with (
            self._handler.lock or contextlib.nullcontext(),
            contextlib.suppress(OSError, ValueError),
        ):
            self._handler.stream.write("".join(lines))
            self._handler.stream.flush()

    def _line(self, stamp: float, fields: dict[str, Any]) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
        when += f",{int(stamp * 1000) % 1000:03d}"
        if self._json:
            record: dict[str, Any] = {"time": when, "level": "INFO", "name": access.name}
            record.update(process=self._process, message="call", **fields)
            return json.dumps(record) + "\n"
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{when} INFO {access.name} call {pairs}\n"


_access_writer: AccessWriter | None = None


def configure(log_format: str | None = None, access_lines: bool = False) -> Listener:
    """Log to stderr in `log_format` ("json" or "text"; default from PLANNER_LOG_FORMAT, json).
    Called by the server (`access_lines`: it writes them) and by each worker process (which
    inherit the environment)."""
    global _access_writer
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
    listener = Listener(records, handler)
    listener.start()
    if access_lines:
        listener.access_writer = _access_writer = AccessWriter(handler, chosen != "text")
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
    fields = {
        "rpc": method,
        "code": code,
        "duration_ms": round(seconds * 1e3, 3),
        "request_id": request_id,
        "peer": peer,
        "token_name": token_name,
    }
    if _access_writer is not None:
        _access_writer.add(fields)
    else:
        access.info("call", extra=fields)
