"""Regression tests for inputs that once ended in INTERNAL (issue 10, "zero INTERNAL"): each now
gets the status its cause deserves."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import grpc
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def status(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details()


def test_curve_fits_on_a_family_without_runs(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family_name)))
    for call in (
        lambda: stub.FitIsoFLOP(pb.FitIsoFLOPRequest(family=family_name)),
        lambda: stub.FitBrokenPowerLaw(pb.FitBrokenPowerLawRequest(family=family_name)),
    ):
        code, message = status(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no runs" in message


@pytest.mark.parametrize("depth", [300, 100_000])
def test_deeply_nested_page_tokens(stub: rpc.PlannerServiceStub, depth: int) -> None:
    token = base64.urlsafe_b64encode(b'{"after": ' + b"[" * depth + b"]" * depth + b"}").decode()
    code, _ = status(lambda: stub.ListFamilies(pb.ListFamiliesRequest(page_token=token)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_inference_budget_with_only_a_params_cap(stub: rpc.PlannerServiceStub) -> None:
    """lifetime_budget + max_params + a tiny training_weight, no max_tokens: the refusal once
    formatted the absent max_tokens."""
    request = pb.PlanInferenceRequest(
        law=pb.LawSelector(family="chinchilla-epoch-2024"),
        inference_tokens=1e12,
        lifetime_budget=1e22,
        max_params=1e3,
        training_weight=1e-30,
    )
    code, message = status(lambda: stub.PlanInference(request))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "max_params = 1000 cannot use the budget" in message and "None" not in message


def test_predict_at_is_capped(stub: rpc.PlannerServiceStub) -> None:
    request = pb.FitBrokenPowerLawRequest(
        family="chinchilla-epoch-2024", predict_at=[1e20] * 10_001
    )
    code, message = status(lambda: stub.FitBrokenPowerLaw(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("predict_at")


def test_undecodable_requests_are_invalid_argument_and_logged_once(
    server: ServerProcess,
) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # a truncated varint field: not a valid message
    with grpc.insecure_channel(server.target) as channel:
        for method in ("GetFamily", "PlanComputeOptimal", "FitLaw"):
            path = f"/planner.v1.PlannerService/{method}"
            if method == "FitLaw":
                call = channel.unary_stream(path)
                with pytest.raises(grpc.RpcError) as caught:
                    list(call(garbage, timeout=10))
            else:
                with pytest.raises(grpc.RpcError) as caught:
                    channel.unary_unary(path)(garbage, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "not a valid" in caught.value.details()
        for _ in range(30):
            with pytest.raises(grpc.RpcError):
                channel.unary_unary("/planner.v1.PlannerService/GetFamily")(garbage, timeout=10)
    log = server.log_tail(400)
    assert "Traceback" not in log
    assert log.count("undecodable requests refused") <= 1
