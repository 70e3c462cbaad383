"""PLANNER_WORKERS > 1: that many server processes on one port, under one supervisor.

Each worker is a whole server (its own event loop, solver and fit processes) on the same
database, as replicas in separate pods are; the port is shared through SO_REUSEPORT, so the
kernel spreads connections across them. The supervisor forwards SIGTERM/SIGINT, restarts a
worker that dies after it started, and gives up (stopping the rest, exiting with the worker's
code) when one dies during start-up, since the next would fail the same way (a bad database URL).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from server.parent_death import die_with_parent

log = logging.getLogger(__name__)

# A worker that exits sooner than this after its launch failed to start.
START_UP_SECONDS = 15.0
POLL_SECONDS = 0.2


def worker_environment(index: int) -> dict[str, str]:
    """The environment of worker `index`: one worker each; metrics on consecutive ports."""
    env = dict(os.environ)
    env["PLANNER_WORKERS"] = "1"
    env["PLANNER_WORKER_INDEX"] = str(index)
    if port := env.get("PLANNER_METRICS_PORT"):
        env["PLANNER_METRICS_PORT"] = str(int(port) + index)
    return env


class Supervisor:
    def __init__(self, count: int) -> None:
        self.count = count
        self.children: list[subprocess.Popen[bytes] | None] = [None] * count
        self.launched: list[float] = [0.0] * count
        self.stopping = False

    def launch(self, index: int) -> None:
        self.children[index] = subprocess.Popen(
            [sys.executable, "-m", "server.main"],
            env=worker_environment(index),
            # A SIGKILLed supervisor must not leave workers serving on the port.
            preexec_fn=die_with_parent,
        )
        self.launched[index] = time.monotonic()

    def signal_all(self, signum: int) -> None:
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self.signal_all(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for index in range(self.count):
            self.launch(index)
        log.info("supervising %d server processes", self.count)
        failed = 0
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            for index, child in enumerate(self.children):
                if child is None or child.poll() is None or self.stopping:
                    continue
                code = child.returncode
                # Killed by a signal (the OOM killer, an operator): start another. Exited by
                # itself soon after launch: it could not start, and the next would not either.
                early = time.monotonic() - self.launched[index] < START_UP_SECONDS
                if early and code > 0:
                    log.error("server process %d failed to start (exit %d)", index, code)
                    failed = code or 1
                    self.stopping = True
                    self.signal_all(signal.SIGTERM)
                    break
                log.warning("server process %d exited (%d); starting another", index, code)
                self.launch(index)
        codes = [child.wait() for child in self.children if child is not None]
        if failed:
            return failed
        return 0 if all(code == 0 for code in codes) else 1


def supervise(count: int) -> int:
    """Run `count` server processes until SIGTERM or SIGINT; the exit code."""
    return Supervisor(count).run()
