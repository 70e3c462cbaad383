"""Limits on lists in requests and answers (issue 10, item 4) on a real server: law versions are
paged, a fit refuses a family larger than its row cap, and lists that name things twice are
refused. Raw stubs, so the checks are of the wire contract."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients import PlannerClient
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def law_runs() -> list[pb.Run]:
    """Nine runs on a Chinchilla-form law."""
    sizes = [(n, n * m) for n in (1e8, 3e8, 1e9) for m in (10.0, 20.0, 40.0)]
    return [
        pb.Run(run_id=f"r{i}", params=n, tokens=d, loss=1.82 + 482 / n**0.35 + 2085 / d**0.37)
        for i, (n, d) in enumerate(sizes)
    ]


def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details()


def test_law_versions_are_paged(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family_name)))
    chinchilla = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    for form, count in (("chinchilla", 4), ("overtraining", 3)):
        for i in range(count):
            parameters = (
                {**chinchilla, "E": 1.69 + i / 100}
                if form == "chinchilla"
                else {"E": 1.8 + i / 100, "a": 200.0, "b": 300.0, "eta": 0.3}
            )
            stub.PutLaw(pb.PutLawRequest(family=family_name, form=form, parameters=parameters))
    expected = [("chinchilla", v) for v in range(1, 5)] + [("overtraining", v) for v in range(1, 4)]
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListLawVersions(
            pb.ListLawVersionsRequest(family=family_name, page_size=3, page_token=token)
        )
        assert len(page.laws) <= 3
        seen += [(law.form, law.version) for law in page.laws]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == expected and pages == 3
    one_form = stub.ListLawVersions(
        pb.ListLawVersionsRequest(family=family_name, form="overtraining", page_size=2)
    )
    assert [law.version for law in one_form.laws] == [1, 2] and one_form.next_page_token
    code, details = refusal(
        lambda: stub.ListLawVersions(
            pb.ListLawVersionsRequest(family=family_name, page_token="Zm9v")
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details
    code, _ = refusal(
        lambda: stub.ListLawVersions(pb.ListLawVersionsRequest(family=family_name, page_size=1001))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_lists_that_name_a_thing_twice_are_refused(stub: rpc.PlannerServiceStub) -> None:
    family = "chinchilla-hoffmann-2022"
    code, details = refusal(
        lambda: stub.BacktestLaw(
            pb.BacktestLawRequest(family=family, train_below=1e20, methods=["huber"] * 1000)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "methods" in details
    options = pb.FitOptions(borrow_from=pb.LawSelector(family=family), borrow=["alpha", "alpha"])
    code, details = refusal(lambda: stub.StartFit(pb.FitLawRequest(family=family, options=options)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "options.borrow" in details


def test_a_family_beyond_the_fit_row_cap_is_resource_exhausted(tmp_path: Path) -> None:
    env = {"PLANNER_MAX_RUNS_PER_FIT": "8"}
    with (
        ServerProcess(tmp_path / "cap.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name="big")))
        stub.AddRuns(pb.AddRunsRequest(family="big", runs=law_runs()))
        calls = [
            lambda: list(stub.FitLaw(pb.FitLawRequest(family="big", bootstrap=0))),
            lambda: stub.StartFit(pb.FitLawRequest(family="big")),
            lambda: stub.BacktestLaw(pb.BacktestLawRequest(family="big", train_below=1e20)),
            lambda: stub.FitIsoFLOP(pb.FitIsoFLOPRequest(family="big")),
            lambda: stub.FitBrokenPowerLaw(pb.FitBrokenPowerLawRequest(family="big")),
        ]
        for call in calls:
            code, details = refusal(call)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "9 rows" in details and "PLANNER_MAX_RUNS_PER_FIT" in details
        # Within the cap the same family fits.
        stub.DeleteRuns(pb.DeleteRunsRequest(family="big", run_ids=["r8"]))
        events = list(stub.FitLaw(pb.FitLawRequest(family="big", method="vpnls", bootstrap=0)))
        assert events[-1].HasField("law")


def test_the_client_reads_every_page_of_law_versions(
    client: PlannerClient, stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family_name)))
    for i in range(105):  # more than one default page of 100
        parameters = {"E": 1.5 + i / 1000, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
        stub.PutLaw(pb.PutLawRequest(family=family_name, form="chinchilla", parameters=parameters))
    versions = client.list_law_versions(family_name)
    assert [law.version for law in versions] == list(range(1, 106))


def test_calls_beyond_the_admission_cap_are_refused_but_health_answers(tmp_path: Path) -> None:
    env = {"PLANNER_MAX_CONCURRENT_RPCS": "2"}
    with (
        ServerProcess(tmp_path / "admission.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name="held")))
        stub.AddRuns(pb.AddRunsRequest(family="held", runs=law_runs()))
        family = pb.GetFamilyRequest(name="held")
        # Two open streams of a long fit hold both slots until they end.
        operation = stub.StartFit(pb.FitLawRequest(family="held", method="huber", bootstrap=1000))
        watches = [stub.WatchOperation(pb.WatchOperationRequest(name=operation.name)) for _ in "ab"]
        for watch in watches:
            next(watch)  # each is in flight
        code, details = refusal(lambda: stub.GetFamily(family))
        assert (
            code == grpc.StatusCode.RESOURCE_EXHAUSTED and "PLANNER_MAX_CONCURRENT_RPCS" in details
        )
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        for watch in watches:
            watch.cancel()
        deadline = time.monotonic() + 10
        while True:  # the slots come back once the server sees the streams end
            try:
                assert stub.GetFamily(family).family.name == "held"
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline
                time.sleep(0.1)
        stub.CancelOperation(pb.CancelOperationRequest(name=operation.name))
