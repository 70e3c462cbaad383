"""A PostgreSQL database that goes away under a running server: each call is UNAVAILABLE with a
message saying nothing changed (never INTERNAL), and the server recovers by itself once the
database is back (issue 11, item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.postgres_cluster import PostgresCluster
from tests.service.server_process import ServerProcess


@pytest.fixture
def own_cluster(postgres_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """A cluster of this test's own (the session's is shared), made where the session's is."""
    cluster = PostgresCluster(postgres_cluster.binaries)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_calls_are_unavailable_while_the_database_is_away(
    own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = own_cluster.new_database().replace("postgresql+psycopg://", "postgresql://")
    with (
        ServerProcess(tmp_path / "outage.db", database_url=url) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name="outage")))
        own_cluster.pause()
        for call in (
            lambda: stub.GetFamily(pb.GetFamilyRequest(name="outage"), timeout=30),
            lambda: stub.CreateFamily(
                pb.CreateFamilyRequest(family=pb.Family(name="later")), timeout=30
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
            assert "nothing was changed" in caught.value.details()
        own_cluster.resume()
        stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name="later")), timeout=30)
        names = {f.name for f in stub.ListFamilies(pb.ListFamiliesRequest(page_size=100)).families}
        assert {"outage", "later"} <= names
