"""A server that cannot use its database says so in one line and exits 1, never with a
traceback, and never shows the database password (issue 11, item 1)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.service.server_process import SERVER, free_port


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nonsense", "is not a database URL"),
        ("mysql://planner:secretpw@localhost/planner", "no database driver"),
        ("postgresql+psycopg://planner:secretpw@127.0.0.1:{port}/planner", "Connection refused"),
        ("sqlite:////proc/no-such-dir/planner.db", "No such file or directory"),
    ],
)
def test_an_unusable_database_is_one_line_and_exit_1(url: str, says: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env["PLANNER_DATABASE_URL"] = url.format(port=free_port())  # nothing listens there
    env["PLANNER_LISTEN"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(SERVER)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("planner-server: "), done.stderr
    assert says in lines[0] and "secretpw" not in lines[0]


def test_workers_with_an_unusable_database_say_so_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env["PLANNER_DATABASE_URL"] = f"postgresql://planner:secretpw@127.0.0.1:{free_port()}/x"
    env["PLANNER_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["PLANNER_WORKERS"] = "2"
    done = subprocess.run(
        [str(SERVER)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Connection refused" in lines[0], done.stderr
    assert "secretpw" not in lines[0]
