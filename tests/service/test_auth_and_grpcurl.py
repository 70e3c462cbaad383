"""Bearer-token authentication, and grpcurl working through reflection alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients import PlannerClient, PlannerClientError
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc
from server.auth import load_tokens
from tests.service.server_process import ServerProcess

GRPCURL = Path(sys.executable).parent / "grpcurl"


def test_tokens_file_enforces_bearer_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    # An indented '#' line is a comment; a non-ASCII token must not break other callers.
    tokens.write_text("# team tokens\nsecret-one\n   # old-token\n\nsecret-two\nclé-três\n")
    env = {"PLANNER_TOKENS_FILE": str(tokens)}
    with ServerProcess(tmp_path / "auth.db", env) as server:
        with PlannerClient(server.target) as anonymous:
            with pytest.raises(PlannerClientError) as caught:
                anonymous.get_family("chinchilla-epoch-2024")
            assert caught.value.code == "UNAUTHENTICATED"
        with (
            PlannerClient(server.target, token="wrong") as stranger,
            pytest.raises(PlannerClientError, match="unknown token"),
        ):
            stranger.get_family("chinchilla-epoch-2024")
        with PlannerClient(server.target, token="secret-two") as member:
            assert member.get_family("chinchilla-epoch-2024").name == "chinchilla-epoch-2024"
        with (
            PlannerClient(server.target, token="# old-token") as commented,
            pytest.raises(PlannerClientError, match="unknown token"),
        ):
            commented.get_family("chinchilla-epoch-2024")
        # With a non-ASCII token in the file, every check compares against it too.
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PlannerServiceStub(channel)
            reply = stub.GetFamily(
                pb.GetFamilyRequest(name="chinchilla-epoch-2024"),
                metadata=(("authorization", "Bearer secret-one"),),
                timeout=5,
            )
            assert reply.family.name == "chinchilla-epoch-2024"
        # Health stays open for probes.
        with grpc.insecure_channel(server.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpcurl_lists_and_calls_without_proto_files(server: ServerProcess) -> None:
    listed = subprocess.run(
        [str(GRPCURL), "-plaintext", server.target, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "planner.v1.PlannerService" in listed.stdout.split()
    request = json.dumps({"law": {"family": "chinchilla-epoch-2024"}, "budget": {"flops": 5.76e23}})
    called = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-d",
            request,
            server.target,
            "planner.v1.PlannerService/PlanComputeOptimal",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer = json.loads(called.stdout)
    assert answer["params"] == pytest.approx(7.22487e10, rel=1e-5)
    assert answer["binding"] == ["compute"]


def test_a_missing_tokens_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {
        "PLANNER_TOKENS_FILE": str(tmp_path / "nowhere"),
        "PLANNER_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "planner-server")],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "nowhere" in done.stderr
    assert not (tmp_path / "never.db").exists()  # refused before any other start-up work


def test_hash_tokens_turns_plain_tokens_into_the_json_form(tmp_path: Path) -> None:
    plain = tmp_path / "tokens"
    plain.write_text("# team tokens\nsecret-one\n\nsecret-two\n")
    server = str(Path(sys.executable).parent / "planner-server")
    done = subprocess.run(
        [server, "--hash-tokens", str(plain)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout  # hashes only
    hashed = tmp_path / "tokens.json"
    hashed.write_text(done.stdout)
    # The same callers, names and roles as the plain file gives the server.
    assert load_tokens(hashed) == load_tokens(plain)
    assert {p.name for p in load_tokens(hashed).values()} == {"token-1", "token-2"}
    again = subprocess.run(
        [server, "--hash-tokens", str(hashed)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "JSON already" in again.stderr and not again.stdout
