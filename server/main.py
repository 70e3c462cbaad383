"""`planner-server`: run the service, or (`--health-check`) ask a running one if it serves."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import Settings


def local_target(listen: str) -> str:
    """Where to reach a server listening on `listen` from this host."""
    host, _, port = listen.rpartition(":")
    if host in ("", "[::]", "0.0.0.0", "::"):
        host = "localhost"
    return f"{host}:{port}"


def health_check(settings: Settings, timeout: float) -> int:
    """0 if the server at PLANNER_LISTEN reports SERVING, else 1 (a message on stderr)."""
    target = local_target(settings.listen)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.RpcError as error:
        print(f"unhealthy: {target}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"unhealthy: {target}: {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="planner-server",
        description="The compute-budget planner gRPC service; configured by PLANNER_* "
        "environment variables (see README).",
    )
    parser.add_argument(
        "--health-check",
        action="store_true",
        help="ask the server at PLANNER_LISTEN whether it is SERVING; exit 0 if so",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="health check timeout, s")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValueError as error:
        print(f"planner-server: bad configuration: {error}", file=sys.stderr)
        return 2
    if args.health_check:
        return health_check(settings, args.timeout)
    if settings.tokens_file is not None:
        # Before any other start-up work: a server that would refuse every call should not
        # migrate a database or start workers first.
        from server.auth import load_tokens

        try:
            load_tokens(settings.tokens_file)
        except ValueError as error:
            print(f"planner-server: {error}", file=sys.stderr)
            return 1
    from server import logs

    os.environ[logs.FORMAT_VARIABLE] = settings.log_format  # the worker processes read it
    logs.configure(settings.log_format)
    from server.app import StartupFailed, serve

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except StartupFailed as error:
        print(f"planner-server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
