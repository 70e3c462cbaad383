"""Assemble the server: store (migrated, catalogue loaded), warm solver pool, service, health,
reflection; then serve until SIGTERM/SIGINT and stop gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from planner.catalog import CATALOG
from planner_api.v1 import planner_pb2 as pb
from server.auth import BearerTokenInterceptor, load_tokens
from server.config import Settings
from server.decoding import add_service
from server.law_cache import LawCache
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
    store: Store

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.pool.shutdown()
        self.store.close()


async def start(settings: Settings) -> RunningServer:
    """Start serving; health turns SERVING only once the store and solver pool are ready."""
    store = Store(settings.database_url)
    await asyncio.to_thread(store.migrate)
    if await asyncio.to_thread(store.seed_catalog, CATALOG):
        log.info("loaded the published catalogue into a fresh database")
    pool = SolverPool(settings.solver_processes)
    interceptors = []
    if settings.tokens_file is not None:
        interceptors.append(BearerTokenInterceptor(load_tokens(settings.tokens_file)))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ],
    )
    add_service(
        PlannerService(
            store, pool, settings.max_runs_per_request, LawCache(settings.law_cache_seconds)
        ),
        server,
    )
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
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise SystemExit(f"cannot listen on {settings.listen}")
    await server.start()
    pids = await pool.warm()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving planner.v1 on %s (port %d), %d solver processes %s",
        settings.listen,
        port,
        len(pids),
        sorted(pids),
    )
    return RunningServer(server, port, health_servicer, pool, store)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and stop."""
    running = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.1f s)", settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
