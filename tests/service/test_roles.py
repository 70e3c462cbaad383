"""Roles (issue 11, item 3): the auth matrix — no token, a wrong one, read, write and admin
tokens against a read, a write and a delete RPC — on a server whose tokens file holds hashes
only; open reads by configuration; every RPC of the service has a role."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from server.auth import ADMIN, READS, WRITES, load_tokens
from tests.service.server_process import ServerProcess

TOKENS = {"reader": "r-token", "writer": "w-token", "operator": "a-token"}
ROLES = {"reader": "read", "writer": "write", "operator": "admin"}


def tokens_file(folder: Path) -> Path:
    path = folder / "tokens.json"
    entries = [
        {"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(), "role": ROLES[name]}
        for name, token in TOKENS.items()
    ]
    path.write_text(json.dumps({"tokens": entries}))
    assert not any(token in path.read_text() for token in TOKENS.values())  # hashes only
    return path


def code(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def outcomes(stub: rpc.PlannerServiceStub, caller: str, token: str | None) -> dict[str, str]:
    """Status of a read, a write (a new family) and a delete (of that family) by one caller."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    family = f"f-{caller}"
    read = pb.GetFamilyRequest(name="chinchilla-hoffmann-2022")
    write = pb.CreateFamilyRequest(family=pb.Family(name=family))
    delete = pb.DeleteFamilyRequest(name=family)
    return {
        "read": code(lambda: stub.GetFamily(read, metadata=metadata)),
        "write": code(lambda: stub.CreateFamily(write, metadata=metadata)),
        "delete": code(lambda: stub.DeleteFamily(delete, metadata=metadata)),
    }


def auth_matrix(stub: rpc.PlannerServiceStub) -> dict[tuple[str, str], str]:
    """(caller, kind) -> status for every caller of CALLERS and each kind of call."""
    return {
        (caller, kind): outcome
        for caller, token in CALLERS.items()
        for kind, outcome in outcomes(stub, caller, token).items()
    }


CALLERS: dict[str, str | None] = {"none": None, "wrong": "not-a-token", **TOKENS}
UNAUTH, DENIED = "UNAUTHENTICATED", "PERMISSION_DENIED"
# An admin deletes the family it created; a writer's delete is refused before it runs.
EXPECTED_MATRIX = {
    ("none", "read"): UNAUTH, ("none", "write"): UNAUTH, ("none", "delete"): UNAUTH,
    ("wrong", "read"): UNAUTH, ("wrong", "write"): UNAUTH, ("wrong", "delete"): UNAUTH,
    ("reader", "read"): "OK", ("reader", "write"): DENIED, ("reader", "delete"): DENIED,
    ("writer", "read"): "OK", ("writer", "write"): "OK", ("writer", "delete"): DENIED,
    ("operator", "read"): "OK", ("operator", "write"): "OK", ("operator", "delete"): "OK",
}  # fmt: skip


def access_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The planner.access lines of a stopped server's log."""
    return [line for line in server.log_records() if line["name"] == "planner.access"]


def test_the_auth_matrix(tmp_path: Path) -> None:
    env = {"PLANNER_TOKENS_FILE": str(tokens_file(tmp_path))}
    with (
        ServerProcess(tmp_path / "roles.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        assert auth_matrix(rpc.PlannerServiceStub(channel)) == EXPECTED_MATRIX
        server.stop()
    # Every refusal has its access line, naming the token when it was a known one.
    refused = Counter(
        (line["code"], line["token_name"])
        for line in access_lines(server)
        if line["code"] in (UNAUTH, DENIED)
    )
    assert refused == {
        (UNAUTH, ""): 6,
        (DENIED, "reader"): 2,
        (DENIED, "writer"): 1,
    }


def test_open_reads_need_no_token_but_writes_do(tmp_path: Path) -> None:
    env = {"PLANNER_TOKENS_FILE": str(tokens_file(tmp_path)), "PLANNER_OPEN_READS": "true"}
    with (
        ServerProcess(tmp_path / "open.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        assert code(lambda: stub.ListFamilies(pb.ListFamiliesRequest())) == "OK"
        write = pb.CreateFamilyRequest(family=pb.Family(name="x"))
        assert code(lambda: stub.CreateFamily(write)) == "UNAUTHENTICATED"
        # An open read with a known token is still logged under the token's name.
        reader = [("authorization", f"Bearer {TOKENS['reader']}")]
        assert code(lambda: stub.ListFamilies(pb.ListFamiliesRequest(), metadata=reader)) == "OK"
        server.stop()
    logged = [(line["rpc"], line["code"], line["token_name"]) for line in access_lines(server)]
    assert logged == [
        ("ListFamilies", "OK", ""),
        ("CreateFamily", "UNAUTHENTICATED", ""),  # refused calls are logged too
        ("ListFamilies", "OK", "reader"),
    ]


def test_every_rpc_has_exactly_one_role() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["PlannerService"].methods}
    assert READS | WRITES | ADMIN == methods
    assert not (READS & WRITES or READS & ADMIN or WRITES & ADMIN)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"tokens": [{"name": "a", "sha256": "zz", "role": "read"}]}', "64 hex digits"),
        ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "role": "root"}]}', "role"),
        ('{"tokens": [{"sha256": "' + "0" * 64 + '", "role": "read"}]}', "name"),
        ('{"tokens": {}}', "not a list"),
        ('{"tokens": []}', "holds no tokens"),
    ],
)
def test_malformed_tokens_files_are_refused(content: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=says):
        load_tokens(path)
