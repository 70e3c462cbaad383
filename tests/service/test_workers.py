"""PLANNER_WORKERS=2: two server processes share the port (SO_REUSEPORT) under a supervisor
that replaces a killed one and stops both on SIGTERM (issue 11, item 2)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import grpc

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.processes import alive, children, descendants
from tests.service.server_process import ServerProcess, free_port
from tests.service.test_metrics import scrape

CONNECTIONS = 40


def serving_pids(server: ServerProcess) -> set[int]:
    """The processes that answered calls made on fresh connections, from their access lines."""
    before = server.log.stat().st_size
    for _ in range(CONNECTIONS):
        # A local subchannel pool: a connection of its own, not one shared with earlier channels.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(server.target, options) as channel:
            stub = rpc.PlannerServiceStub(channel)
            stub.ListFamilies(pb.ListFamiliesRequest(page_size=1), timeout=30)
    time.sleep(0.3)  # access lines are written in batches
    lines = server.log_records(before)
    return {line["process"] for line in lines if line.get("name") == "planner.access"}


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_children(pid: int, count: int, exclude: set[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = [p for p in children(pid) if p not in exclude]
        if len(now) == count:
            return now
        time.sleep(0.1)
    raise TimeoutError(f"server {pid} has children {children(pid)}, not {count} new ones")


def test_two_workers_share_the_port_and_are_supervised(tmp_path: Path) -> None:
    metrics = free_port()
    while not bindable(metrics + 1):  # rarely, the next port is taken: another pair
        metrics = free_port()
    env = {
        "PLANNER_WORKERS": "2",
        "PLANNER_METRICS_PORT": str(metrics),
        "PLANNER_METRICS_ADDRESS": "127.0.0.1",
    }
    server = ServerProcess(tmp_path / "workers.db", env)
    with server:
        workers = wait_for_children(server.pid, 2, set(), 30)
        assert server.wait_processes_serving(2, 60) == set(workers)
        assert serving_pids(server) == set(workers)
        # Each worker serves its own metrics, on the port after the previous worker's, and
        # counts only the calls it answered itself.
        answered = [
            sum(
                value
                for (name, labels), value in scrape(metrics + index).items()
                if name == "planner_requests_total" and ("method", "ListFamilies") in labels
            )
            for index in range(2)
        ]
        assert all(count > 0 for count in answered) and sum(answered) == CONNECTIONS
        every = descendants(server.pid)

        os.kill(workers[0], signal.SIGKILL)
        (replacement,) = wait_for_children(server.pid, 1, set(workers), 30)
        assert server.wait_processes_serving(3, 60) == {*workers, replacement}
        deadline = time.monotonic() + 60
        while serving_pids(server) != {workers[1], replacement}:
            assert time.monotonic() < deadline, "the replacement never answered"
            time.sleep(0.5)
        every |= descendants(server.pid)
    assert server.exit_code == 0
    deadline = time.monotonic() + 10
    while any(map(alive, every)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in every if alive(pid)]
