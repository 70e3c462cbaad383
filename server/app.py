"""Assemble the server: store (migrated, catalogue loaded), warm solver pool, service, health,
reflection; then serve until SIGTERM/SIGINT and stop gracefully."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import sqlalchemy as sa
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import exc as sa_exc

from planner.catalog import CATALOG
from planner_api.v1 import planner_pb2 as pb
from server.admission import AdmissionInterceptor
from server.auth import BearerTokenInterceptor, load_tokens
from server.config import Settings, load_tls
from server.decoding import add_service
from server.fit_pool import FitPool
from server.law_cache import LawCache
from server.logs import log_call
from server.metrics import Metrics
from server.operations import OperationRunner
from server.servicer import PlannerService
from server.solver_pool import SolverPool
from server.store import Store

log = logging.getLogger("planner.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PlannerService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    pool: SolverPool
    fit_pool: FitPool
    operations: OperationRunner
    store: Store

    async def stop(self, grace: float) -> None:
        """NOT_SERVING at once; running operations stopped and marked INTERRUPTED (the next
        server resumes them); unary calls get `grace`; then every worker is stopped."""
        await self.health.enter_graceful_shutdown()
        server_stopped = asyncio.create_task(self.server.stop(grace))
        interrupted = await self.operations.stop()
        if interrupted:
            log.info("%d running operations marked interrupted", interrupted)
        await server_stopped
        await asyncio.gather(
            asyncio.to_thread(self.pool.shutdown), asyncio.to_thread(self.fit_pool.shutdown)
        )
        self.store.close()


class StartupFailed(Exception):
    """The server cannot start; the message is the one line an operator reads."""


def open_store(url: str) -> Store:
    """The store at `url`, migrated and seeded; StartupFailed (with the password hidden) when the
    URL is unusable or the database unreachable."""
    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError as exc:
        raise StartupFailed(f"PLANNER_DATABASE_URL is not a database URL: {exc}") from exc
    try:
        store = Store(url)
        store.migrate()
        if store.seed_catalog(CATALOG):
            log.info("loaded the published catalogue into a fresh database")
    except (sa_exc.NoSuchModuleError, ImportError) as exc:
        raise StartupFailed(
            f"PLANNER_DATABASE_URL {shown}: no database driver for it ({exc})"
        ) from exc
    except sa_exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StartupFailed(f"cannot use the database {shown}: {reason}") from exc
    except OSError as exc:  # SQLite's directory cannot be made
        raise StartupFailed(f"cannot use the database {shown}: {exc}") from exc
    return store


async def start(settings: Settings) -> RunningServer:
    """Start serving; health turns SERVING only once the store and solver pool are ready."""
    store = await asyncio.to_thread(open_store, settings.database_url)
    pool = SolverPool(
        settings.solver_processes,
        settings.plan_saturation_per_process * settings.solver_processes,
    )
    fit_pool = FitPool(settings.fit_processes)
    operations = OperationRunner(
        store,
        settings.max_running_operations,
        settings.max_queued_operations,
        settings.operation_timeout_seconds,
        settings.operation_heartbeat_seconds,
    )
    metrics = Metrics()

    def observe(
        method: str, code: str, seconds: float, request_id: str, peer: str, token_name: str
    ) -> None:
        metrics.observe_call(method, code, seconds)
        if settings.access_log:
            log_call(method, code, seconds, request_id, peer, token_name)

    admission = AdmissionInterceptor(settings.max_concurrent_rpcs, observe)
    # Admission first (outermost): calls the token check refuses are counted and logged too.
    interceptors: list[grpc.aio.ServerInterceptor] = [admission]
    if settings.tokens_file is not None:
        tokens = load_tokens(settings.tokens_file)
        interceptors.append(BearerTokenInterceptor(tokens, settings.open_reads))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ],
    )
    laws = LawCache(settings.law_cache_seconds)
    service = PlannerService(
        store,
        pool,
        settings.max_runs_per_request,
        laws,
        fit_pool,
        operations,
        settings.default_deadline_seconds,
        settings.max_runs_per_fit,
    )
    operations.resumes("fit", service.rebuild_fit)
    operations.resumes("backtest", service.rebuild_backtest)
    add_service(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, not_serving)
    if settings.metrics_port is not None:
        metrics.watch({"solver": pool, "fit": fit_pool}, operations, laws, admission)
        try:
            metrics.serve(settings.metrics_port, settings.metrics_address)
        except OSError as error:
            raise SystemExit(
                f"cannot serve metrics on {settings.metrics_address}:{settings.metrics_port}: "
                f"{error}"
            ) from error
        log.info("metrics on %s:%d", settings.metrics_address, settings.metrics_port)
    try:
        tls = load_tls(settings)  # checked by main() already; here for callers of start()
    except ValueError as exc:
        raise StartupFailed(str(exc)) from exc
    if tls is None:
        port = server.add_insecure_port(settings.listen)
    else:
        port = server.add_secure_port(
            settings.listen,
            grpc.ssl_server_credentials(
                [(tls.key, tls.cert)],
                root_certificates=tls.client_ca,
                require_client_auth=tls.client_ca is not None,
            ),
        )
    if port == 0:
        raise SystemExit(f"cannot listen on {settings.listen}")
    await server.start()
    pids, fit_pids = await asyncio.gather(pool.warm(), fit_pool.warm())
    # Everything loaded so far (numpy, scipy, SQLAlchemy, the catalogue: ~155,000 objects) lives
    # as long as the server: kept out of the collector, a full collection no longer walks it all
    # (45-80 ms here, every call in flight paused) but only what was made since.
    gc.collect()
    gc.freeze()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    pool.on_saturation = _report_saturation(health_servicer)
    log.info(
        "serving planner.v1 on %s (port %d), solver processes %s, fit processes %s",
        settings.listen,
        port,
        sorted(pids),
        sorted(fit_pids),
    )
    resumed = await operations.resume_interrupted()
    if resumed:
        log.info("resumed %d interrupted operations", resumed)
    operations.start_heartbeat()
    return RunningServer(server, port, health_servicer, pool, fit_pool, operations, store)


def _report_saturation(servicer: health.aio.HealthServicer) -> Callable[[bool], None]:
    """Health of the planning service follows the solver processes' load; the server's
    overall health ("") stays SERVING, since it still answers."""
    tasks: set[asyncio.Task[None]] = set()

    def report(saturated: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if saturated
            else health_pb2.HealthCheckResponse.SERVING
        )
        task = asyncio.get_running_loop().create_task(servicer.set(SERVICE_NAME, status))
        tasks.add(task)  # keep a reference until it ran
        task.add_done_callback(tasks.discard)

    return report


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Before start-up: a signal while the pools warm stops the server once they are up,
        # rather than killing it outright.
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings)
    await stop.wait()
    log.info("shutting down (grace %.1f s)", settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
