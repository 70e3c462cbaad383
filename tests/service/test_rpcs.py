"""Every RPC against a real server on a free port; health, reflection and restarts."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from clients import PlannerClient, PlannerClientError
from clients.results import Run
from tests.service.server_process import ServerProcess

EPOCH_PARAMS = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def chinchilla_runs(data_dir: Path, limit: int = 40) -> list[Run]:
    """Runs of Chinchilla's Figure 4 as digitised by Epoch (tokens D = C / 6N)."""
    with (data_dir / "chinchilla_epoch_svg_extracted.csv").open() as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [
        Run(
            run_id=f"svg-{i}",
            params=float(row["Model Size"]),
            tokens=float(row["Training FLOP"]) / (6 * float(row["Model Size"])),
            loss=float(row["loss"]),
            flops=float(row["Training FLOP"]),
        )
        for i, row in enumerate(rows)
    ]


def test_health_is_serving(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "planner.v1.PlannerService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"planner.v1.PlannerService", "grpc.health.v1.Health"} <= names


def test_catalogue_is_loaded(client: PlannerClient) -> None:
    names = {family.name for family in client.list_families()}
    assert {
        "chinchilla-hoffmann-2022",
        "chinchilla-epoch-2024",
        "inference-sardana-2023",
        "data-constrained-muennighoff-2023",
        "overtraining-gadre-2024-redpajama",
    } <= names
    law = client.get_law("chinchilla-epoch-2024")
    assert law.parameters == EPOCH_PARAMS
    assert law.method == "published" and "2404.10102" in law.citation


def test_list_families_paginates(client: PlannerClient) -> None:
    all_names = [f.name for f in client.list_families()]
    paged = [f.name for f in client.list_families(page_size=2)]
    assert paged == all_names == sorted(all_names)


def test_family_lifecycle(client: PlannerClient, family_name: str) -> None:
    created = client.create_family(family_name, "a test family", "non_embedding", 8.0)
    assert (created.name, created.description, created.param_convention) == (
        family_name,
        "a test family",
        "non_embedding",
    )
    assert created.flops_per_param_token == 8.0 and created.revision == 1
    assert client.get_family(family_name) == created
    assert family_name in {f.name for f in client.list_families()}
    client.delete_family(family_name)
    assert family_name not in {f.name for f in client.list_families()}


def test_runs_are_idempotent_and_paginated(
    client: PlannerClient, family_name: str, data_dir: Path
) -> None:
    client.create_family(family_name)
    runs = chinchilla_runs(data_dir, 25)
    first = client.add_runs(family_name, runs)
    assert (first.added, first.unchanged, first.family.run_count) == (25, 0, 25)
    again = client.add_runs(family_name, runs[:10])
    assert (again.added, again.unchanged, again.family.run_count) == (0, 10, 25)
    assert again.family.revision == first.family.revision  # nothing changed
    listed = list(client.list_runs(family_name, page_size=7))
    assert listed == runs


def test_runs_without_ids_get_stable_ids(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    runs = [Run("", 1e9, 2e10, 3.1, unique_tokens=1e10), Run("", 2e9, 4e10, 2.9)]
    assert client.add_runs(family_name, runs).added == 2
    assert client.add_runs(family_name, runs).unchanged == 2
    stored = list(client.list_runs(family_name))
    assert all(run.run_id.startswith("auto-") for run in stored)
    assert stored[0].unique_tokens == 1e10
    # A checkpoint names its run: without a run_id it could not be grouped with its siblings.
    with pytest.raises(PlannerClientError) as caught:
        client.add_runs(family_name, [Run("", 1e9, 1e10, 3.3, step=100)])
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == ["runs[0].run_id"]


def test_law_versions_are_append_only(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    first = client.put_law(family_name, "chinchilla", EPOCH_PARAMS, citation="v1")
    second = client.put_law(family_name, "chinchilla", {**EPOCH_PARAMS, "E": 1.9}, note="v2")
    assert (first.version, second.version) == (1, 2)
    assert client.get_law(family_name).parameters["E"] == 1.9
    assert client.get_law(family_name, "chinchilla", 1) == replace(first, current=False)
    versions = client.list_law_versions(family_name)
    assert [law.version for law in versions] == [1, 2]
    assert [law.current for law in versions] == [False, True]  # the newest put is current
    assert versions[0] == replace(first, current=False)
    family = client.get_family(family_name)
    assert [(law.form, law.version) for law in family.laws] == [("chinchilla", 2)]


def test_predict(client: PlannerClient) -> None:
    prediction = client.predict("chinchilla-epoch-2024", 70e9, 1.4e12)
    expected = 1.8172 + 482.01 / 70e9**0.3478 + 2085.43 / 1.4e12**0.3658
    assert prediction.loss == pytest.approx(expected, rel=1e-12)
    assert prediction.interval is None
    assert (prediction.law.form, prediction.law.version) == ("chinchilla", 1)


def test_predict_data_constrained_with_unique_tokens(client: PlannerClient) -> None:
    """LAWS.md §11.7: L(6.34e9, 242e9, U = 25e9) = 2.2256440889984477."""
    prediction = client.predict("data-constrained-muennighoff-2023", 6.34e9, 242e9, 25e9)
    assert prediction.loss == pytest.approx(2.2256440889984477, rel=1e-12)


def test_plan_with_repeated_data(client: PlannerClient) -> None:
    """LAWS.md §11.7: C = 1e22, U = 25e9 -> N = 7.02616e9, D = 2.37209e11 (9.49 epochs)."""
    plan = client.plan_compute_optimal(
        "data-constrained-muennighoff-2023", compute=1e22, unique_tokens=25e9
    )
    assert plan.params == pytest.approx(7.02616e9, rel=2e-6)
    assert plan.tokens == pytest.approx(2.37209e11, rel=2e-6)
    assert plan.epochs == pytest.approx(2.37209e11 / 25e9, rel=2e-6)
    assert plan.binding == ["compute"] and plan.solver == "scalar/bounded"
    capped = client.plan_compute_optimal(
        "data-constrained-muennighoff-2023", compute=1e22, unique_tokens=25e9, max_epochs=4
    )
    assert capped.tokens == pytest.approx(1e11, rel=1e-12)
    assert capped.binding == ["compute", "max_epochs"] and capped.epochs == pytest.approx(4.0)
    # Without U the same law plans as Chinchilla, with no epochs.
    free = client.plan_compute_optimal("data-constrained-muennighoff-2023", compute=1e22)
    assert free.solver == "closed_form" and free.epochs is None
    assert free.params == pytest.approx(9.22e9, rel=1e-3)


def test_plan_compute_optimal_closed_form(client: PlannerClient) -> None:
    plan = client.plan_compute_optimal("chinchilla-epoch-2024", compute=5.76e23)
    assert plan.params == pytest.approx(7.22487e10, rel=1e-5)
    assert plan.tokens == pytest.approx(1.32874e12, rel=1e-5)
    assert plan.loss == pytest.approx(1.974441, abs=1e-6)
    assert plan.flops == pytest.approx(5.76e23, rel=1e-12)
    assert plan.tokens_per_param == pytest.approx(18.39, rel=5e-4)
    assert plan.binding == ["compute"] and plan.solver == "closed_form"
    assert plan.intervals == {}


def test_plan_compute_optimal_with_binding_cap(client: PlannerClient) -> None:
    plan = client.plan_compute_optimal("chinchilla-epoch-2024", compute=1e25, max_params=1e11)
    assert plan.tokens == pytest.approx(1.666667e13, rel=5e-7)
    assert plan.loss == pytest.approx(1.919571, abs=1e-6)
    assert plan.binding == ["compute", "max_params"]
    assert plan.solver == "gp/CLARABEL"


def test_plan_from_accelerator_hours(client: PlannerClient) -> None:
    hours, peak, mfu = 2.0e5, 9.89e14, 0.4
    plan = client.plan_compute_optimal(
        "chinchilla-epoch-2024", accelerator_hours=hours, peak_flops_per_second=peak, mfu=mfu
    )
    direct = client.plan_compute_optimal("chinchilla-epoch-2024", compute=hours * 3600 * peak * mfu)
    assert plan.params == pytest.approx(direct.params, rel=1e-12)


def test_plan_for_target_loss(client: PlannerClient) -> None:
    """LAWS.md §11.3: Epoch, least compute for L = 2.0 is 2.4748e23."""
    plan = client.plan_compute_optimal("chinchilla-epoch-2024", target_loss=2.0)
    assert plan.flops == pytest.approx(2.4748e23, rel=5e-5)
    assert plan.binding == ["target_loss"]


def test_overtraining_family_plans_like_its_chinchilla_equivalent(client: PlannerClient) -> None:
    plan = client.plan_compute_optimal("overtraining-gadre-2024-redpajama", compute=1e22)
    # Independent: Gadre's own closed form, best multiplier M* = (b/a)^(1/(2 eta)) (LAWS.md
    # §3.2: 7.42 for RedPajama), and C = 6 M N^2.
    multiplier = (366.6872 / 212.2361) ** (1 / (2 * 0.13643))
    assert multiplier == pytest.approx(7.42, abs=0.005)
    assert plan.tokens_per_param == pytest.approx(multiplier, rel=1e-9)
    assert plan.params == pytest.approx(math.sqrt(1e22 / (6 * multiplier)), rel=1e-9)


def test_families_own_flops_per_token_is_used(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name, flops_per_param_token=8.0)
    client.put_law(family_name, "chinchilla", EPOCH_PARAMS)
    plan = client.plan_compute_optimal(family_name, compute=1e23)
    assert 8 * plan.params * plan.tokens == pytest.approx(1e23, rel=1e-12)


def test_restart_keeps_families_runs_and_laws(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    database = tmp_path / "restart.db"
    runs = chinchilla_runs(data_dir, 12)
    with (
        ServerProcess(database, database_url=database_url) as first,
        PlannerClient(first.target) as client,
    ):
        client.create_family("kept", "survives restarts")
        client.add_runs("kept", runs)
        client.put_law("kept", "chinchilla", EPOCH_PARAMS)
        client.delete_family("inference-sardana-2023")
    with (
        ServerProcess(database, database_url=database_url) as second,
        PlannerClient(second.target) as client,
    ):
        family = client.get_family("kept")
        assert family.description == "survives restarts" and family.run_count == 12
        assert list(client.list_runs("kept")) == runs
        assert client.get_law("kept").parameters == EPOCH_PARAMS
        names = {f.name for f in client.list_families()}
        # The catalogue is loaded into fresh databases only: a deleted entry stays deleted.
        assert "inference-sardana-2023" not in names and "chinchilla-epoch-2024" in names


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "stop.db")
    process.start()
    assert process.stop() == 0


def test_queries_see_a_new_law_version_at_once(client: PlannerClient, family_name: str) -> None:
    """Read-your-writes through the server's law cache."""
    client.create_family(family_name)
    client.put_law(family_name, "chinchilla", EPOCH_PARAMS)
    first = client.predict(family_name, 7e10, 1.4e12)
    client.put_law(family_name, "chinchilla", {**EPOCH_PARAMS, "E": 2.0})
    second = client.predict(family_name, 7e10, 1.4e12)
    assert second.loss - first.loss == pytest.approx(2.0 - 1.8172, rel=1e-9)
    assert second.law.version == 2
    client.delete_family(family_name)
    with pytest.raises(PlannerClientError) as caught:
        client.predict(family_name, 7e10, 1.4e12)
    assert caught.value.code == "NOT_FOUND"
