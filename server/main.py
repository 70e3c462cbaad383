"""`planner-server`: run the service, or (`--health-check`) ask a running one if it serves, or
(`--hash-tokens FILE`) turn a file of plain tokens into the JSON form holding only hashes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import Settings, load_health_client_pair, load_tls


def local_target(listen: str) -> str:
    """Where to reach a server listening on `listen` from this host."""
    host, _, port = listen.rpartition(":")
    if host in ("", "[::]", "0.0.0.0", "::"):
        host = "localhost"
    return f"{host}:{port}"


def health_channel(settings: Settings, target: str) -> grpc.Channel:
    """A channel to this host's server as its own settings describe it: plaintext, or TLS that
    trusts exactly the server's certificate (PLANNER_TLS_CERT; gRPC accepts it as the trust
    anchor, so no CA file is needed), presenting a client certificate under mutual TLS."""
    tls = load_tls(settings)
    if tls is None:
        return grpc.insecure_channel(target)
    key = chain = None
    if tls.client_ca is not None:
        chain, key = load_health_client_pair(settings) or (tls.cert, tls.key)
    credentials = grpc.ssl_channel_credentials(tls.cert, key, chain)
    options = []
    if settings.tls_health_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_health_server_name))
    return grpc.secure_channel(target, credentials, options)


def health_check(settings: Settings, timeout: float, service: str = "") -> int:
    """0 if the server at PLANNER_LISTEN reports SERVING, else 1 (a message on stderr); 2 when
    its TLS settings cannot be used."""
    target = local_target(settings.listen)
    try:
        channel = health_channel(settings, target)
    except ValueError as error:
        print(f"planner-server: {error}", file=sys.stderr)
        return 2
    try:
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        print(f"unhealthy: {target}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"unhealthy: {target}: {status}", file=sys.stderr)
        return 1
    return 0


def hash_tokens(path: str) -> int:
    """Print the JSON tokens file (sha256 hashes, names token-1.., role admin) for a file of
    plain tokens, one per line; 1 with a message when it cannot be read or is JSON already."""
    from server.auth import hashed_tokens_json

    try:
        print(hashed_tokens_json(Path(path)))
    except ValueError as error:
        print(f"planner-server: {error}", file=sys.stderr)
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
    parser.add_argument(
        "--service",
        default="",
        help="with --health-check: the service to ask about, e.g. planner.v1.PlannerService "
        "(default: the server as a whole)",
    )
    parser.add_argument(
        "--hash-tokens",
        metavar="FILE",
        help="print the JSON tokens file (hashes only, each token an admin named token-N) for "
        "FILE of plain tokens, one per line; then exit",
    )
    args = parser.parse_args(argv)
    if args.hash_tokens is not None:
        return hash_tokens(args.hash_tokens)
    try:
        settings = Settings()
    except ValueError as error:
        print(f"planner-server: bad configuration: {error}", file=sys.stderr)
        return 2
    if args.health_check:
        return health_check(settings, args.timeout, args.service)
    # Before any other start-up work: a server that would refuse every call, or could not
    # listen, should not migrate a database or start workers first.
    try:
        load_tls(settings)
        if settings.tokens_file is not None:
            from server.auth import load_tokens

            load_tokens(settings.tokens_file)
    except ValueError as error:
        print(f"planner-server: {error}", file=sys.stderr)
        return 1
    from server import logs

    os.environ[logs.FORMAT_VARIABLE] = settings.log_format  # the worker processes read it
    logs.configure(settings.log_format, access_lines=settings.access_log)
    from server.app import StartupFailed, open_store, serve

    if settings.workers > 1:
        from server.workers import supervise

        try:
            # Migrate and seed once here, so the workers do not race to, and a bad database
            # URL is one line rather than one per worker.
            open_store(settings.database_url).close()
        except StartupFailed as error:
            print(f"planner-server: {error}", file=sys.stderr)
            return 1
        return supervise(settings.workers)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except StartupFailed as error:
        print(f"planner-server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
