"""Bad input gets a precise status and message, never INTERNAL, and nothing half-written."""

from __future__ import annotations

import math
from typing import Any

import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import Run

NAN, INF = math.nan, math.inf
EPOCH = "chinchilla-epoch-2024"


def fails(call: Any, code: str, field: str | None = None, match: str = "") -> PlannerClientError:
    with pytest.raises(PlannerClientError) as caught:
        call()
    error = caught.value
    assert error.code == code, error
    assert match in error.message, error.message
    if field is not None:
        assert [v.field for v in error.violations] == [field], error.violations
    return error


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"compute": NAN}, "budget.flops", "NaN"),
        ({"compute": INF}, "budget.flops", "finite"),
        ({"compute": 0.0}, "budget.flops", "> 0"),
        ({"compute": -1e21}, "budget.flops", "> 0"),
        ({"target_loss": NAN}, "target_loss", "NaN"),
        ({"compute": 1e23, "max_params": -1.0}, "max_params", "> 0"),
        ({"compute": 1e23, "max_tokens": INF}, "max_tokens", "finite"),
        ({"compute": 1e23, "unique_tokens": 0.0}, "unique_tokens", "> 0"),
        ({"compute": 1e23, "max_epochs": 2.0}, "max_epochs", "needs unique_tokens"),
        (
            {"accelerator_hours": 100.0, "peak_flops_per_second": 1e15, "mfu": 1.5},
            "budget.accelerator.mfu",
            "(0, 1]",
        ),
        ({}, "goal", "budget or target_loss"),
    ],
)
def test_invalid_plan_requests(
    client: PlannerClient, kwargs: dict[str, float], field: str, match: str
) -> None:
    fails(lambda: client.plan_compute_optimal(EPOCH, **kwargs), "INVALID_ARGUMENT", field, match)


def test_infeasible_caps_say_which_and_by_how_much(client: PlannerClient) -> None:
    error = fails(
        lambda: client.plan_compute_optimal(EPOCH, compute=1e25, max_params=1e11, max_tokens=1e12),
        "FAILED_PRECONDITION",
        "max_params",
    )
    assert "6e+23 FLOPs" in error.message and "16.67x" in error.message


def test_target_at_or_below_e(client: PlannerClient) -> None:
    for target in (1.8172, 1.5):
        fails(
            lambda t=target: client.plan_compute_optimal(EPOCH, target_loss=t),
            "FAILED_PRECONDITION",
            "target_loss",
            "irreducible loss",
        )


def test_target_unreachable_under_cap(client: PlannerClient) -> None:
    fails(
        lambda: client.plan_compute_optimal(EPOCH, target_loss=1.9, max_params=1e10),
        "FAILED_PRECONDITION",
        "target_loss",
        "cannot go below",
    )


@pytest.mark.parametrize(
    ("params", "tokens", "field"),
    [(NAN, 1e12, "params"), (0.0, 1e12, "params"), (7e10, -1.0, "tokens"), (7e10, INF, "tokens")],
)
def test_invalid_predict(client: PlannerClient, params: float, tokens: float, field: str) -> None:
    fails(lambda: client.predict(EPOCH, params, tokens), "INVALID_ARGUMENT", field)


def test_unknown_family_and_law(client: PlannerClient, family_name: str) -> None:
    fails(lambda: client.get_family("no-such-family"), "NOT_FOUND", "family")
    fails(lambda: client.predict("no-such-family", 1e9, 1e10), "NOT_FOUND", "law.family")
    fails(lambda: client.plan_compute_optimal("no-such-family", compute=1e21), "NOT_FOUND")
    fails(lambda: client.delete_family("no-such-family"), "NOT_FOUND")
    fails(lambda: client.add_runs("no-such-family", [Run("a", 1, 1, 1)]), "NOT_FOUND")
    fails(lambda: client.get_law(EPOCH, "chinchilla", 7), "NOT_FOUND", "version")
    fails(lambda: client.get_law(EPOCH, "bnsl-2022"), "INVALID_ARGUMENT", "form")
    fails(lambda: client.predict(EPOCH, 1e9, 1e10, version=3), "NOT_FOUND", "law.version")
    client.create_family(family_name)
    fails(lambda: client.plan_compute_optimal(family_name, compute=1e21), "NOT_FOUND", "law.form")


@pytest.mark.parametrize(
    ("name", "match"), [("", "required"), ("Has Spaces", "not a valid"), ("x" * 101, "not a valid")]
)
def test_bad_family_names(client: PlannerClient, name: str, match: str) -> None:
    fails(lambda: client.create_family(name), "INVALID_ARGUMENT", "family.name", match)


def test_duplicate_family(client: PlannerClient) -> None:
    fails(lambda: client.create_family(EPOCH), "ALREADY_EXISTS", "family.name")


def test_bad_family_settings(client: PlannerClient, family_name: str) -> None:
    fails(
        lambda: client.create_family(family_name, flops_per_param_token=-6.0),
        "INVALID_ARGUMENT",
        "family.flops_per_param_token",
    )
    fails(lambda: client.create_family(family_name, "d" * 2001), "INVALID_ARGUMENT")
    fails(lambda: client.get_family(family_name), "NOT_FOUND")


def test_bad_law_parameters(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    good = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.36}
    fails(
        lambda: client.put_law(family_name, "chinchilla", {**good, "alpha": NAN}),
        "INVALID_ARGUMENT",
        "parameters.alpha",
    )
    fails(
        lambda: client.put_law(family_name, "chinchilla", {**good, "A": -1.0}),
        "INVALID_ARGUMENT",
        "parameters.A",
    )
    fails(lambda: client.put_law(family_name, "chinchilla", {}), "INVALID_ARGUMENT", "parameters")
    fails(lambda: client.put_law(family_name, "kaplan", good), "INVALID_ARGUMENT", "form")
    assert client.list_law_versions(family_name) == []


def test_rejected_batch_stores_nothing(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    good = [Run(f"r{i}", 1e9 * (i + 1), 2e10, 3.0 - 0.1 * i) for i in range(5)]
    bad = [*good[:3], Run("bad", NAN, 2e10, 3.0), *good[3:]]
    fails(lambda: client.add_runs(family_name, bad), "INVALID_ARGUMENT", "runs[3].params")
    fails(lambda: client.add_runs(family_name, []), "INVALID_ARGUMENT", "runs")
    assert client.get_family(family_name).run_count == 0
    # A run id already stored with other values rejects the whole batch.
    client.add_runs(family_name, good[:2])
    changed = [Run("new", 5e9, 1e11, 2.5), Run("r1", 1e9, 2e10, 2.0)]
    fails(lambda: client.add_runs(family_name, changed), "ALREADY_EXISTS", "runs[1].run_id")
    assert [run.run_id for run in client.list_runs(family_name)] == ["r0", "r1"]
    # Inconsistent runs.
    fails(
        lambda: client.add_runs(family_name, [Run("u", 1e9, 1e10, 3.0, unique_tokens=2e10)]),
        "INVALID_ARGUMENT",
        "runs[0].unique_tokens",
    )
    fails(
        lambda: client.add_runs(family_name, [Run("s", 1e9, 1e10, 3.0, step=-5)]),
        "INVALID_ARGUMENT",
        "runs[0].step",
    )


def test_oversized_upload_is_refused_whole(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    runs = [Run(f"r{i}", 1e9, 2e10 + i, 3.0) for i in range(50_001)]
    fails(lambda: client.add_runs(family_name, runs), "INVALID_ARGUMENT", "runs", "at most 50000")
    assert client.get_family(family_name).run_count == 0


def test_stale_expected_revision_is_aborted(client: PlannerClient, family_name: str) -> None:
    family = client.create_family(family_name)
    client.add_runs(family_name, [Run("a", 1e9, 2e10, 3.0)], expected_revision=family.revision)
    fails(
        lambda: client.add_runs(
            family_name, [Run("b", 1e9, 3e10, 2.9)], expected_revision=family.revision
        ),
        "ABORTED",
        "expected_revision",
    )
    assert client.get_family(family_name).run_count == 1


def test_repetition_planning_refusals(client: PlannerClient) -> None:
    family = "data-constrained-muennighoff-2023"
    fails(
        lambda: client.plan_compute_optimal(family, target_loss=2.0, unique_tokens=25e9),
        "FAILED_PRECONDITION",
        "target_loss",
        "cannot go below",
    )
    fails(
        lambda: client.plan_compute_optimal(
            family, compute=1e24, unique_tokens=25e9, max_params=1e9, max_epochs=2
        ),
        "FAILED_PRECONDITION",
        "max_params",
        "allow at most",
    )


def test_extreme_numbers_are_refused_not_internal(client: PlannerClient, family_name: str) -> None:
    """Budgets and targets that leave float range for the law get FAILED_PRECONDITION."""
    fails(lambda: client.plan_compute_optimal(EPOCH, target_loss=1e300), "FAILED_PRECONDITION")
    fails(lambda: client.plan_compute_optimal(EPOCH, compute=5e-324), "FAILED_PRECONDITION")
    client.create_family(family_name)
    flat = {"E": 1.0, "A": 1000.0, "B": 1.0, "alpha": 0.001, "beta": 0.001}
    client.put_law(family_name, "chinchilla", flat)
    fails(lambda: client.plan_compute_optimal(family_name, compute=1e23), "FAILED_PRECONDITION")
    fails(
        lambda: client.put_law(family_name, "chinchilla", {**flat, "alpha": 50.0}),
        "INVALID_ARGUMENT",
        "parameters.alpha",
        "at most 5",
    )


@pytest.mark.parametrize("k", [1e-300, 0.5, 1e6, math.nan])
def test_flops_per_param_token_range(client: PlannerClient, family_name: str, k: float) -> None:
    fails(
        lambda: client.create_family(family_name, flops_per_param_token=k),
        "INVALID_ARGUMENT",
        "family.flops_per_param_token",
    )


def test_forged_page_tokens(server: Any) -> None:
    import base64
    import json

    import grpc

    from planner_api.v1 import planner_pb2 as pb
    from planner_api.v1 import planner_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.PlannerServiceStub(channel)
        for after in (10**30, -1, True, 1.5, None):
            token = base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListRuns(pb.ListRunsRequest(family=EPOCH, page_token=token), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListFamilies(pb.ListFamiliesRequest(page_token="!!not base64"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_law_source_text_limits(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    good = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.36}
    fails(
        lambda: client.put_law(family_name, "chinchilla", good, method="m" * 41),
        "INVALID_ARGUMENT",
        "source.method",
    )
    fails(
        lambda: client.put_law(family_name, "chinchilla", good, note="a\x00b"),
        "INVALID_ARGUMENT",
        "source.note",
    )
    assert client.list_law_versions(family_name) == []
