"""Start a real `planner-server` on a free loopback port (tests and bench), and stop it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVER = Path(sys.executable).parent / "planner-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A planner-server subprocess with its own SQLite database file, or on `database_url`
    (its log is still written beside `database`).

    Outside PLANNER_* settings are dropped, so only the defaults and `extra_env` apply.
    `solver_processes` None keeps the server's default pool size. A server with TLS on (in
    `extra_env`) needs `credentials` to poll its health with (carrying a client certificate
    under mutual TLS); `channel()` opens a channel to it with them.
    """

    def __init__(
        self,
        database: Path,
        extra_env: dict[str, str] | None = None,
        solver_processes: int | None = 1,
        database_url: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.database = database
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log = database.with_suffix(f".{self.port}.log")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
        self.env["PLANNER_LISTEN"] = self.target
        self.env["PLANNER_DATABASE_URL"] = database_url or f"sqlite:///{database}"
        if solver_processes is not None:
            self.env["PLANNER_SOLVER_PROCESSES"] = str(solver_processes)
        self.env.update(extra_env or {})
        self.credentials = credentials
        self.process: subprocess.Popen[bytes] | None = None
        self.launched = 0.0
        self.exit_code: int | None = None

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

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_records(self, offset: int = 0) -> list[dict[str, Any]]:
        """The JSON lines of the log from byte `offset` on (a line still being written is
        skipped: it does not parse yet)."""
        records = []
        with self.log.open(errors="replace") as log:
            log.seek(offset)
            for line in log:
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        records.append(json.loads(line))
        return records

    def wait_processes_serving(self, count: int, timeout: float = 90.0) -> set[int]:
        """Until `count` server processes (dead ones included) have logged that they serve, their
        pools warm; their pids. Health answers as soon as one worker of several does."""
        deadline = time.monotonic() + timeout
        while True:
            serving = {
                int(record["process"])
                for record in self.log_records()
                if str(record.get("message", "")).startswith("serving planner.v1")
            }
            if len(serving) >= count:
                return serving
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(serving)} of {count} server processes serve: {serving}")
            time.sleep(0.1)

    def start(self, timeout: float = 90.0) -> float:
        """Launch and wait for SERVING; seconds it took."""
        self.launch()
        return self.wait_serving(timeout)

    def launch(self) -> None:
        self.launched = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SERVER)], env=self.env, stdout=log, stderr=log, cwd=self.log.parent
            )

    def channel(self) -> grpc.Channel:
        """A channel to the server: TLS with `credentials` when given, else plaintext."""
        if self.credentials is None:
            return grpc.insecure_channel(self.target)
        return grpc.secure_channel(self.target, self.credentials)

    def wait_serving(self, timeout: float = 90.0) -> float:
        """Poll gRPC health until SERVING; seconds since launch."""
        if self.process is None:
            self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log_tail()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.monotonic() - self.launched
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not SERVING after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait (kill after `timeout`); the exit code, None if never launched."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode
        return self.exit_code
