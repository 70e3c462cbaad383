"""Server settings from PLANNER_* environment variables (DESIGN.md §5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server; defaults suit `make serve` on a laptop."""

    model_config = SettingsConfigDict(env_prefix="PLANNER_", extra="ignore")

    # host:port to listen on; [::] accepts IPv4 and IPv6.
    listen: str = "[::]:50051"
    # SQLAlchemy URL; the default is an embedded SQLite file under ./var/.
    database_url: str = "sqlite:///var/planner.db"
    # File of accepted bearer tokens: JSON with sha256 hashes and roles, or plain tokens one per
    # line (each an admin); unset means no authentication.
    tokens_file: Path | None = None
    # With a tokens file: calls that only read (queries, gets, lists) need no token.
    open_reads: bool = False
    # Worker processes for solver work (GP solves); never on the event loop.
    solver_processes: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1)
    # Worker processes for fits, backtests and bootstraps, apart from the solver processes
    # (they run at a lower CPU priority, so plans stay prompt while fits run).
    fit_processes: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1)
    # Operations (fits, backtests) running at once, and waiting beyond those; more are refused
    # with RESOURCE_EXHAUSTED.
    max_running_operations: int = Field(default=2, ge=1)
    max_queued_operations: int = Field(default=16, ge=0)
    # Seconds an operation may run before it fails with DEADLINE_EXCEEDED.
    operation_timeout_seconds: float = Field(default=3600.0, gt=0)
    # Deadline of long calls (FitLaw, BacktestLaw, FitIsoFLOP, FitBrokenPowerLaw) whose caller
    # sets none; the computation stops when it passes.
    default_deadline_seconds: float = Field(default=600.0, gt=0)
    # Solver calls waiting per solver process beyond which health reports the planning service
    # NOT_SERVING (it recovers below half of that).
    plan_saturation_per_process: int = Field(default=16, ge=1)
    # Calls served at once; more are refused with RESOURCE_EXHAUSTED, which bounds the memory
    # held by answers that clients do not read.
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    # Seconds in-flight calls get to finish on shutdown.
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # Seconds a resolved law is reused by queries; other replicas' writes show within this time.
    law_cache_seconds: float = Field(default=2.0, ge=0)
    # Largest AddRuns batch; larger uploads are refused whole, not half-stored.
    max_runs_per_request: int = Field(default=50_000, ge=1)
    # Log lines on stderr: "json" (one object per line, for collectors) or "text".
    log_format: Literal["json", "text"] = "json"
    # One access line per planner call (rpc, code, duration, request id, peer); about 20 us of
    # CPU per call, so a server answering thousands of plans a second may turn it off.
    access_log: bool = True
    # Port of the Prometheus metrics endpoint (plain HTTP, /metrics); unset: no endpoint.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Address the metrics endpoint listens on.
    metrics_address: str = "0.0.0.0"
    # Most rows (checkpoints count one each) a fit, backtest or comparison fit reads; a larger
    # family is refused with RESOURCE_EXHAUSTED (a fit's memory and time grow with its rows).
    max_runs_per_fit: int = Field(default=200_000, ge=1)
    # Largest request message in bytes (gRPC receive limit).
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
