"""A real server's log (issue 11, item 5): JSON lines, one access line per planner call with the
request id the caller sent (or one made and returned) and the name of the caller's token, never
the token itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess

TOKEN = "s3cret-token-never-logged"


def test_access_lines_carry_request_ids_and_never_the_token(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    env = {"PLANNER_TOKENS_FILE": str(tokens)}
    auth = ("authorization", f"Bearer {TOKEN}")
    with (
        ServerProcess(tmp_path / "logs.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        family = pb.GetFamilyRequest(name="chinchilla-hoffmann-2022")
        _, call = stub.GetFamily.with_call(family, metadata=[auth, ("x-request-id", "trace-7")])
        assert ("x-request-id", "trace-7") in call.trailing_metadata()
        _, call = stub.GetFamily.with_call(family, metadata=[auth])
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetFamily(pb.GetFamilyRequest(name="missing"), metadata=[auth])
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # An error answer returns it too, beside its status details.
        trailers = dict(caught.value.trailing_metadata())  # type: ignore[attr-defined]
        failed = trailers["x-request-id"]
        assert len(failed) == 32 and failed != made and "grpc-status-details-bin" in trailers
        server.stop()
    text = server.log.read_text()
    assert TOKEN not in text
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in text.splitlines() if line[:1] == "{"
    ]
    assert any(line["name"] == "planner.server" for line in lines)  # start-up, as JSON
    access = [line for line in lines if line["name"] == "planner.access"]
    assert [(line["rpc"], line["code"]) for line in access] == [
        ("GetFamily", "OK"),
        ("GetFamily", "OK"),
        ("GetFamily", "NOT_FOUND"),
    ]
    assert [line["request_id"] for line in access] == ["trace-7", made, failed]
    assert all(line["duration_ms"] >= 0 and "127.0.0.1" in line["peer"] for line in access)
    # A plain tokens file names its first token token-1, as the JSON form would hold it.
    assert [line["token_name"] for line in access] == ["token-1"] * 3
