"""Server settings from PLANNER_* environment variables (DESIGN.md §5), and the TLS files they
name, read and checked before the server starts."""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
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
    # TLS: the server's certificate (chain) and private key, PEM files, both or neither; unset
    # serves plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Mutual TLS: clients must present a certificate signed by a CA in this PEM file (needs
    # tls_cert and tls_key).
    tls_client_ca: Path | None = None
    # `--health-check` with mutual TLS presents this certificate and key (PEM, both or neither);
    # unset: the server's own, which works when a CA in tls_client_ca signed it.
    tls_health_client_cert: Path | None = None
    tls_health_client_key: Path | None = None
    # Name `--health-check` expects in the server's certificate, when it names neither
    # localhost nor the listen address (e.g. only planner.<namespace>.svc).
    tls_health_server_name: str | None = None
    # Server processes on the one port (SO_REUSEPORT), each a whole server on the same
    # database; more than 1 runs a supervisor. Metrics: worker i on PLANNER_METRICS_PORT + i.
    workers: int = Field(default=1, ge=1, le=64)
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
    # Running operations' heartbeat; a replica silent for 6 beats is taken for dead and its
    # operations are run again by another.
    operation_heartbeat_seconds: float = Field(default=5.0, gt=0)
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
    # One access line per planner call (rpc, code, duration, request id, peer, token name);
    # about 1 us on the event loop and 7-9 us of CPU in all per call (written in batches).
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


@dataclass(frozen=True)
class TlsFiles:
    """The PEM contents of the TLS settings, each checked to parse (and the key to match)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None


def load_tls(settings: Settings) -> TlsFiles | None:
    """The server's TLS files, None when TLS is off. ValueError, one line naming the setting,
    for a half-configured pair or a file that is unreadable, empty or not PEM."""
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ValueError("PLANNER_TLS_CLIENT_CA needs PLANNER_TLS_CERT and PLANNER_TLS_KEY")
    pair = _load_pair(settings.tls_cert, settings.tls_key, "PLANNER_TLS_CERT", "PLANNER_TLS_KEY")
    if pair is None:
        return None
    client_ca = None
    if settings.tls_client_ca is not None:
        client_ca = _certificates("PLANNER_TLS_CLIENT_CA", settings.tls_client_ca)
    return TlsFiles(pair[0], pair[1], client_ca)


def load_health_client_pair(settings: Settings) -> tuple[bytes, bytes] | None:
    """The client certificate and key `--health-check` presents, when set (PEM bytes)."""
    return _load_pair(
        settings.tls_health_client_cert,
        settings.tls_health_client_key,
        "PLANNER_TLS_HEALTH_CLIENT_CERT",
        "PLANNER_TLS_HEALTH_CLIENT_KEY",
    )


def _load_pair(
    cert: Path | None, key: Path | None, cert_setting: str, key_setting: str
) -> tuple[bytes, bytes] | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        unset = cert_setting if cert is None else key_setting
        raise ValueError(
            f"{unset} is unset: {cert_setting} and {key_setting} go together (both or neither)"
        )
    cert_pem = _certificates(cert_setting, cert)
    key_pem = _read(key_setting, key)
    # The ssl module checks the key parses and belongs to the certificate; gRPC itself would
    # only fail later, at each handshake. An encrypted key gets no password (gRPC has none).
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=b"")
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(
            f"{key_setting}: {key} is not an unencrypted PEM private key of the certificate in "
            f"{cert_setting} ({_reason(exc)})"
        ) from exc
    return cert_pem, key_pem


def _read(setting: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ValueError(f"{setting}: {path} is empty")
    return data


def _certificates(setting: str, path: Path) -> bytes:
    """The file's bytes, once they parse as one or more PEM certificates."""
    data = _read(setting, path)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{setting}: {path} holds no PEM certificate ({_reason(exc)})") from exc
    return data


def _reason(exc: Exception) -> str:
    """OpenSSL's reason on one line, without the library tag and C source position."""
    text = re.sub(r"^\[[A-Z0-9_: ]+\]\s*|\s*\(_ssl\.c:\d+\)", "", str(exc))
    return " ".join(text.split())
