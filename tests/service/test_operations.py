"""Long-running operations and the isolation of plans from fits (issue 10, items 1-3 and 6) on
real servers: operations run, stream, list, cancel, survive their caller, refuse beyond the
queue, stop their workers on cancel or deadline, and are interrupted by SIGTERM and resumed by
the next server. Raw stubs, so the checks are of the wire contract."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from server.app import SERVICE_NAME
from server.store import Store
from tests.service.processes import alive, cpu_seconds, descendants
from tests.service.server_process import ServerProcess
from tests.service.slow_fits import create_family, noisy_runs, slow_fit, wait_for


def busy_workers(server: ServerProcess, window: float = 0.5) -> list[int]:
    """Processes under the server that used most of a core over `window` seconds."""
    before = {pid: cpu_seconds(pid) for pid in descendants(server.pid)}
    time.sleep(window)
    busy = []
    for pid, start in before.items():
        end = cpu_seconds(pid)
        if start is not None and end is not None and end - start > 0.5 * window:
            busy.append(pid)
    return busy


def idle_within(pids: list[int], seconds: float) -> bool:
    """Each pid has exited or stopped computing within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        still = [p for p in pids if alive(p)]
        if not still:
            return True
        time.sleep(0.05)
    # Still alive: idle means (almost) no CPU over a short window.
    before = {p: cpu_seconds(p) or 0.0 for p in pids}
    time.sleep(0.3)
    return all((cpu_seconds(p) or before[p]) - before[p] < 0.05 for p in pids)


def bootstrapping(operation: pb.Operation) -> bool:
    return operation.progress.stage == "bootstrap"


@pytest.fixture(scope="module")
def fit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    database = tmp_path_factory.mktemp("operations") / "planner.db"
    with ServerProcess(database, {"PLANNER_FIT_PROCESSES": "2"}) as process:
        yield process


@pytest.fixture
def stub(fit_server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(fit_server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def test_a_fit_operation_streams_and_stores_its_law(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create_family(stub, family_name, noisy_runs(30))
    started = stub.StartFit(
        pb.FitLawRequest(family=family_name, method="vpnls", bootstrap=20, seed=2)
    )
    assert started.name.startswith("operations/") and started.kind == "fit"
    assert started.state in (pb.OPERATION_STATE_QUEUED, pb.OPERATION_STATE_RUNNING)
    assert not started.done and started.attempt == 1
    seen = list(stub.WatchOperation(pb.WatchOperationRequest(name=started.name), timeout=60))
    final = seen[-1]
    assert final.done and final.state == pb.OPERATION_STATE_SUCCEEDED
    assert [op.done for op in seen].count(True) == 1  # the stream ends with the done one
    stored = stub.GetLaw(
        pb.GetLawRequest(family=family_name, form="chinchilla", version=final.law.version)
    ).law
    assert dict(stored.parameters) == dict(final.law.parameters)
    assert stored.options["bootstrap"] == "20"
    again = stub.GetOperation(pb.GetOperationRequest(name=started.name))
    assert again.law == final.law and again.create_time == started.create_time
    listed = stub.ListOperations(pb.ListOperationsRequest(family=family_name))
    assert [op.name for op in listed.operations] == [started.name]


def test_operations_page_newest_first(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    create_family(stub, family_name, noisy_runs(12))
    names = []
    for seed in range(3):
        request = pb.FitLawRequest(family=family_name, method="vpnls", bootstrap=0, seed=seed)
        names.append(stub.StartFit(request).name)
    for name in names:
        wait_for(stub, name, lambda op: op.done, 60)
    pages, token = [], ""
    while True:
        page = stub.ListOperations(
            pb.ListOperationsRequest(family=family_name, page_size=2, page_token=token)
        )
        pages.append([op.name for op in page.operations])
        token = page.next_page_token
        if not token:
            break
    assert pages == [names[::-1][:2], names[::-1][2:]]


def test_cancel_stops_the_work_within_a_second(
    fit_server: ServerProcess, stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create_family(stub, family_name, noisy_runs(100))
    started = stub.StartFit(slow_fit(family_name))
    wait_for(stub, started.name, bootstrapping, 60)
    busy = busy_workers(fit_server)
    assert busy  # the bootstrap keeps fit workers computing
    cancelled = stub.CancelOperation(pb.CancelOperationRequest(name=started.name))
    assert idle_within(busy, 1.0)
    assert cancelled.done and cancelled.state == pb.OPERATION_STATE_CANCELLED
    assert cancelled.error.code == "CANCELLED"
    versions = stub.ListLawVersions(pb.ListLawVersionsRequest(family=family_name))
    assert not versions.laws  # nothing stored
    # Cancelling again changes nothing.
    assert stub.CancelOperation(pb.CancelOperationRequest(name=started.name)) == cancelled


def test_a_deadline_stops_a_synchronous_fit(
    fit_server: ServerProcess, stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    create_family(stub, family_name, noisy_runs(100))
    busy: list[int] = []
    call_ended = threading.Event()

    def sample() -> None:  # the workers computing just before the deadline
        nonlocal busy
        while not call_ended.is_set():
            busy = busy_workers(fit_server, 0.3) or busy

    sampler = threading.Thread(target=sample)
    sampler.start()
    events = stub.FitLaw(slow_fit(family_name), timeout=5.0)
    with pytest.raises(grpc.RpcError) as caught:
        list(events)
    call_ended.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert busy and idle_within(busy, 1.0)
    sampler.join()
    (operation,) = stub.ListOperations(pb.ListOperationsRequest(family=family_name)).operations
    assert operation.state == pb.OPERATION_STATE_CANCELLED


def test_plans_answer_while_fits_run(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    create_family(stub, family_name, noisy_runs(100))
    names = [stub.StartFit(slow_fit(family_name)).name for _ in range(2)]
    wait_for(stub, names[0], bootstrapping, 60)
    capped = pb.PlanComputeOptimalRequest(
        law=pb.LawSelector(family="chinchilla-hoffmann-2022"),
        budget=pb.ComputeBudget(flops=1e23),
        max_params=1e10,  # binds: a GP solve on a plan worker
        max_tokens=2e12,
    )
    for _ in range(20):
        plan = stub.PlanComputeOptimal(capped, timeout=30)
        assert plan.solver.startswith("gp/")
    # The plans did not wait for the fits: those are still running.
    states = [stub.GetOperation(pb.GetOperationRequest(name=n)).state for n in names]
    assert pb.OPERATION_STATE_RUNNING in states
    for name in names:
        stub.CancelOperation(pb.CancelOperationRequest(name=name))


def test_bad_operation_requests(stub: rpc.PlannerServiceStub) -> None:
    cases = [
        (lambda: stub.GetOperation(pb.GetOperationRequest(name="x")), "INVALID_ARGUMENT"),
        (
            lambda: stub.GetOperation(pb.GetOperationRequest(name="operations/" + "0" * 32)),
            "NOT_FOUND",
        ),
        (lambda: stub.StartFit(pb.FitLawRequest(family="no-such-family")), "NOT_FOUND"),
        (
            lambda: stub.StartFit(pb.FitLawRequest(family="chinchilla-hoffmann-2022", seed=-1)),
            "INVALID_ARGUMENT",
        ),
        (
            lambda: stub.ListOperations(pb.ListOperationsRequest(page_token="bm9wZQ==")),
            "INVALID_ARGUMENT",
        ),
        (
            lambda: stub.CancelOperation(pb.CancelOperationRequest(name="operations/zz")),
            "INVALID_ARGUMENT",
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()  # type: ignore[no-untyped-call]
        assert caught.value.code().name == code, caught.value.details()


def test_a_full_queue_is_resource_exhausted_with_a_retry_hint(tmp_path: Path) -> None:
    env = {"PLANNER_MAX_RUNNING_OPERATIONS": "1", "PLANNER_MAX_QUEUED_OPERATIONS": "0"}
    with (
        ServerProcess(tmp_path / "full.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        create_family(stub, "full", noisy_runs(100))
        first = stub.StartFit(slow_fit("full"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.StartFit(slow_fit("full"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_pb2.Status.FromString(
            dict(caught.value.trailing_metadata())["grpc-status-details-bin"]
        )
        hints = []
        for detail in status.details:
            hint = error_details_pb2.RetryInfo()
            if detail.Unpack(hint):
                hints.append(hint)
        assert len(hints) == 1 and hints[0].retry_delay.seconds > 0
        stub.CancelOperation(pb.CancelOperationRequest(name=first.name))
        # A slot is free again.
        again = stub.StartFit(pb.FitLawRequest(family="full", method="vpnls", bootstrap=0))
        assert wait_for(stub, again.name, lambda op: op.done, 60).state == (
            pb.OPERATION_STATE_SUCCEEDED
        )


def test_sigterm_interrupts_and_the_next_server_resumes(tmp_path: Path, database_url: str) -> None:
    database = tmp_path / "resume.db"
    env = {"PLANNER_SHUTDOWN_GRACE_SECONDS": "1", "PLANNER_DATABASE_URL": database_url}
    request = pb.FitLawRequest(family="resumed", method="huber", bootstrap=60, seed=4)
    with ServerProcess(database, env) as server, grpc.insecure_channel(server.target) as channel:
        stub = rpc.PlannerServiceStub(channel)
        create_family(stub, "resumed", noisy_runs(40))
        name = stub.StartFit(request).name
        wait_for(stub, name, lambda op: op.state == pb.OPERATION_STATE_RUNNING, 30)
        # A synchronous FitLaw in flight is told to retry, and its operation is not resumed.
        with ThreadPoolExecutor(1) as caller:
            attached = caller.submit(lambda: list(stub.FitLaw(slow_fit("resumed"), timeout=60)))
            time.sleep(1.0)
            workers = descendants(server.pid)
            sent = time.monotonic()
            server.stop(timeout=10)
            took = time.monotonic() - sent
            with pytest.raises(grpc.RpcError) as caught:
                attached.result()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
        assert took < 1 + 2, took  # grace + 2 s
        assert server.exit_code == 0
        # Every worker is gone too, within the same bound.
        while time.monotonic() - sent < 3 and any(map(alive, workers)):
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)]
    store = Store(database_url)
    interrupted = store.get_operation(name.removeprefix("operations/"))
    store.close()
    assert interrupted.state == "INTERRUPTED" and interrupted.attempt == 1
    with ServerProcess(database, env) as server, grpc.insecure_channel(server.target) as channel:
        stub = rpc.PlannerServiceStub(channel)
        done = wait_for(stub, name, lambda op: op.done, 120)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED and done.attempt == 2
        versions = stub.ListLawVersions(pb.ListLawVersionsRequest(family="resumed")).laws
        assert [law.version for law in versions] == [done.law.version]  # stored once
        operations = stub.ListOperations(pb.ListOperationsRequest(family="resumed")).operations
        (synchronous,) = [op for op in operations if op.name != name]
        assert synchronous.state == pb.OPERATION_STATE_CANCELLED
        assert synchronous.error.code == "UNAVAILABLE"


def test_health_reports_saturated_plan_workers_and_recovers(tmp_path: Path) -> None:
    env = {"PLANNER_PLAN_SATURATION_PER_PROCESS": "2"}
    with (
        ServerProcess(tmp_path / "busy.db", env, solver_processes=1) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        statuses: queue.Queue[int] = queue.Queue()
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))

        def follow() -> None:
            try:
                for reply in watch:
                    statuses.put(reply.status)
            except grpc.RpcError:
                pass

        threading.Thread(target=follow, daemon=True).start()
        assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.SERVING
        request = pb.PlanInferenceRequest(
            law=pb.LawSelector(family="inference-sardana-2023"),
            inference_tokens=2e12,
            target_loss=2.0,
        )
        with ThreadPoolExecutor(40) as callers:
            plans = list(callers.map(lambda _: stub.PlanInference(request, timeout=60), range(80)))
        assert all(plan.solver.startswith("gp/") for plan in plans)
        seen = [statuses.get(timeout=10)]
        while seen[-1] != health_pb2.HealthCheckResponse.SERVING:
            seen.append(statuses.get(timeout=10))
        watch.cancel()
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen
        overall = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING


def test_a_cancel_through_another_replica_stops_the_work(tmp_path: Path, database_url: str) -> None:
    database = tmp_path / "replicas.db"
    with (
        ServerProcess(database, database_url=database_url) as running,
        ServerProcess(database, database_url=database_url) as other,
        grpc.insecure_channel(running.target) as first,
        grpc.insecure_channel(other.target) as second,
    ):
        here, there = rpc.PlannerServiceStub(first), rpc.PlannerServiceStub(second)
        create_family(here, "shared", noisy_runs(100))
        name = here.StartFit(slow_fit("shared")).name
        wait_for(here, name, lambda op: op.state == pb.OPERATION_STATE_RUNNING, 30)
        busy = busy_workers(running)
        assert busy
        # The other replica answers for it from the store, and can cancel it.
        assert there.GetOperation(pb.GetOperationRequest(name=name)).state == (
            pb.OPERATION_STATE_RUNNING
        )
        cancelled = there.CancelOperation(pb.CancelOperationRequest(name=name))
        assert cancelled.state == pb.OPERATION_STATE_CANCELLED
        # The replica running it notices at its next heartbeat (every 5 s).
        assert idle_within(busy, 7.0)
        assert not here.ListLawVersions(pb.ListLawVersionsRequest(family="shared")).laws
