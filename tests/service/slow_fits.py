"""A fit slow enough to cancel, interrupt or run beside plans (the operations tests and the
serving bench), and waiting on an operation."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc

# Epoch's refit of Chinchilla (LAWS.md §11.2), the surface the runs follow.
E, A, B, ALPHA, BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658


def slow_fit(family: str) -> pb.FitLawRequest:
    """Huber with 1,000 bootstrap resamples: about a minute of CPU on 100 noisy runs."""
    return pb.FitLawRequest(family=family, method="huber", bootstrap=1000, seed=1)


def noisy_runs(count: int) -> list[pb.Run]:
    """Runs on Epoch's surface with 1% noise: enough to make a Huber bootstrap slow."""
    rng = np.random.default_rng(0)
    params = np.geomspace(5e7, 5e9, count)
    tokens = params * rng.uniform(5, 60, count)
    loss = (E + A / params**ALPHA + B / tokens**BETA) * (1 + 0.01 * rng.standard_normal(count))
    return [
        pb.Run(run_id=f"r{i}", params=float(n), tokens=float(d), loss=float(value))
        for i, (n, d, value) in enumerate(zip(params, tokens, loss, strict=True))
    ]


def create_family(stub: rpc.PlannerServiceStub, family: str, runs: list[pb.Run]) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family)), timeout=30)
    stub.AddRuns(pb.AddRunsRequest(family=family, runs=runs), timeout=60)


def wait_for(
    stub: rpc.PlannerServiceStub,
    name: str,
    predicate: Callable[[pb.Operation], bool],
    timeout: float,
) -> pb.Operation:
    """The operation once `predicate` holds; TimeoutError (naming its state) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        operation: pb.Operation = stub.GetOperation(pb.GetOperationRequest(name=name), timeout=10)
        if predicate(operation):
            return operation
        if time.monotonic() > deadline:
            state = pb.OperationState.Name(operation.state)
            raise TimeoutError(
                f"{name} still {state} ({operation.progress}) after {timeout} s: {operation.error}"
            )
        time.sleep(0.05)
