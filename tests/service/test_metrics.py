"""Prometheus metrics on their own port (issue 11, item 4), scraped after known traffic."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess, free_port
from tests.service.slow_fits import create_family, noisy_runs, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_calls_pools_operations_and_cache(tmp_path: Path) -> None:
    port = free_port()
    env = {"PLANNER_METRICS_PORT": str(port), "PLANNER_METRICS_ADDRESS": "127.0.0.1"}
    with (
        ServerProcess(tmp_path / "metrics.db", env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        stub.GetFamily(pb.GetFamilyRequest(name="chinchilla-hoffmann-2022"))
        with pytest.raises(grpc.RpcError):
            stub.GetFamily(pb.GetFamilyRequest(name="no-such-family"))
        law = pb.LawSelector(family="chinchilla-hoffmann-2022")
        for _ in range(3):  # the first loads the law, the others find it cached
            stub.Predict(pb.PredictRequest(law=law, params=7e10, tokens=1.4e12))
        stub.PlanComputeOptimal(  # max_params binds: a solver-process GP solve
            pb.PlanComputeOptimalRequest(
                law=law, budget=pb.ComputeBudget(flops=1e23), max_params=1e10
            )
        )
        create_family(stub, "metered", noisy_runs(20))
        name = stub.StartFit(pb.FitLawRequest(family="metered", method="vpnls", bootstrap=4)).name
        wait_for(stub, name, lambda op: op.done, 60)
        samples = scrape(port)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("planner_requests_total", method="GetFamily", code="OK") == 1
    assert value("planner_requests_total", method="GetFamily", code="NOT_FOUND") == 1
    assert value("planner_requests_total", method="Predict", code="OK") == 3
    assert value("planner_request_seconds_count", method="Predict") == 3
    assert value("planner_request_seconds_bucket", method="Predict", le="+Inf") == 3
    assert not [key for key in samples if ("method", "Check") in key[1]]  # probes not counted
    assert value("planner_pool_calls_total", pool="solver") >= 1
    assert value("planner_pool_calls_total", pool="fit") >= 2  # the fit and its resamples
    assert value("planner_pool_seconds_total", pool="fit") > 0
    assert value("planner_operations_ended_total", outcome="succeeded") == 1
    assert value("planner_operations", state="running") == 0
    assert value("planner_law_cache_lookups_total", result="hit") >= 2
    assert value("planner_law_cache_lookups_total", result="miss") >= 1
    assert samples[("planner_calls_in_flight", ())] == 0  # every call above has ended
    assert samples[("process_resident_memory_bytes", ())] > 50e6
