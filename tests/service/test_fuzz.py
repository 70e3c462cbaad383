"""Property-based fuzzing of every RPC through a real server (issue 10, item 7): random, mostly
malformed requests must get a deliberate status — never INTERNAL or UNKNOWN — and the server
must still be SERVING afterwards. 600 requests here; derandomized, so a failure
reproduces. The strategies live in tests/service/fuzz_requests.py (bench/fuzz.py sends 10,000)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from planner_api.v1 import planner_pb2 as pb
from tests.service.fuzz_requests import FORBIDDEN, REQUESTS, SERVICE, build, seed_family
from tests.service.server_process import ServerProcess


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    database = tmp_path_factory.mktemp("fuzz") / "planner.db"
    with ServerProcess(Path(database)) as server, grpc.insecure_channel(server.target) as chan:
        seed_family(chan)
        yield chan


@settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS)
def test_no_request_gets_internal_or_unknown(
    channel: grpc.Channel, request: tuple[Any, Any]
) -> None:
    method, values = request
    message = build(method.input_type, values)
    response_class = getattr(pb, method.output_type.name)
    path = f"/{SERVICE.full_name}/{method.name}"
    call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
        path,
        request_serializer=type(message).SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        result = call(message, timeout=30)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as error:
        assert error.code() not in FORBIDDEN, (method.name, message, error.details())


def test_still_serving_after_the_fuzzing(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
