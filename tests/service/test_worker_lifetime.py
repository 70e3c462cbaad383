"""Solver processes die with the server, whatever killed it (issue 10: after a SIGKILL of the
main process, what the OOM killer does, the forkserver and both workers used to stay alive)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.service.processes import alive, children
from tests.service.server_process import ServerProcess


def test_workers_die_with_a_killed_server(tmp_path: Path) -> None:
    env = {"PLANNER_FIT_PROCESSES": "2"}
    with ServerProcess(tmp_path / "killed.db", env, solver_processes=2) as server:
        helpers = children(server.pid)
        workers = [w for helper in helpers for w in children(helper)]
        # The forkserver's two solver and two fit processes.
        assert len(workers) == 4, (helpers, workers)
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(alive, helpers + workers)):
            time.sleep(0.1)
        assert not [pid for pid in helpers + workers if alive(pid)]
