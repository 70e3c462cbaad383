"""The server's log format: JSON lines, warnings captured into them (issue 11, item 5)."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from server import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)
    logging.captureWarnings(False)


def test_warnings_and_access_lines_are_json(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    listener = logs.configure("json", access_lines=True)
    warnings.warn("overflow encountered in power", RuntimeWarning, stacklevel=1)
    logs.log_call("Predict", "OK", 0.0012345, "req-1", "ipv4:127.0.0.1:1", "ci")
    listener.stop()  # flush the queue
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    warning = next(line for line in lines if line["name"] == "py.warnings")
    assert "RuntimeWarning: overflow encountered in power" in warning["message"]
    assert warning["level"] == "WARNING"
    access = next(line for line in lines if line["name"] == "planner.access")
    assert access == {
        "time": access["time"],
        "level": "INFO",
        "name": "planner.access",
        "process": access["process"],
        "message": "call",
        "rpc": "Predict",
        "code": "OK",
        "duration_ms": 1.234,
        "request_id": "req-1",
        "peer": "ipv4:127.0.0.1:1",
        "token_name": "ci",
    }


def test_text_format_for_people(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    listener = logs.configure("text")
    logging.getLogger("planner.server").info("serving on %s", "x")
    listener.stop()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("INFO planner.server serving on x")
