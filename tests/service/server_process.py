"""Start a real `planner-server` on a free loopback port for tests, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVER = Path(sys.executable).parent / "planner-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A planner-server subprocess with its own SQLite database file."""

    def __init__(self, database: Path, extra_env: dict[str, str] | None = None) -> None:
        self.database = database
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log = database.with_suffix(f".{self.port}.log")
        self.env = {
            **os.environ,
            "PLANNER_LISTEN": self.target,
            "PLANNER_DATABASE_URL": f"sqlite:///{database}",
            "PLANNER_SOLVER_PROCESSES": "1",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(SERVER)], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not SERVING after {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
