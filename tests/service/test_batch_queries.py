"""PlanComputeOptimalBatch and PredictBatch through a real server: every row is the single
RPC's answer for the same input, and bad input names its field. Raw stubs: the wire contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from planner.planning.batch import Labels
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from server import wire
from server.batch_rpcs import MAX_BATCH_ROWS, MAX_SOLVED_ROWS
from tests.service.refusals import refused
from tests.service.server_process import ServerProcess

EPOCH = "chinchilla-epoch-2024"
E, A, B, ALPHA, BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658
MUENNIGHOFF = "data-constrained-muennighoff-2023"
GADRE = "overtraining-gadre-2024-redpajama"
PLAN_FIELDS = ("params", "tokens", "loss", "flops")
# Budgets 1e19..1e27 FLOPs: with max_params = 1e11 the cap binds from about 1e25.
BUDGETS = np.geomspace(1e19, 1e27, 41)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def selector(family: str = EPOCH) -> pb.LawSelector:
    return pb.LawSelector(family=family)


def single_plan(
    stub: rpc.PlannerServiceStub, family: str, goal: str, value: float, **caps: float
) -> pb.PlanComputeOptimalResponse:
    request = pb.PlanComputeOptimalRequest(law=selector(family), **caps)  # type: ignore[arg-type]
    if goal == "budgets":
        request.budget.flops = value
    else:
        request.target_loss = value
    reply: pb.PlanComputeOptimalResponse = stub.PlanComputeOptimal(request, timeout=30)
    return reply


def assert_rows_match_single(
    stub: rpc.PlannerServiceStub, family: str, goal: str, values: np.ndarray, **caps: float
) -> pb.PlanComputeOptimalBatchResponse:
    request = pb.PlanComputeOptimalBatchRequest(law=selector(family), **caps)  # type: ignore[arg-type]
    getattr(request, goal).extend(values.tolist())
    reply: pb.PlanComputeOptimalBatchResponse = stub.PlanComputeOptimalBatch(request, timeout=60)
    assert len(reply.solver) == len(reply.binding) == values.size
    for name in PLAN_FIELDS:
        assert len(getattr(reply, name)) == values.size
    for i, value in enumerate(values.tolist()):
        single = single_plan(stub, family, goal, value, **caps)
        for name in PLAN_FIELDS:
            # GP rows are finished exactly on their face: as close as closed-form rows.
            assert getattr(reply, name)[i] == pytest.approx(getattr(single, name), rel=1e-9)
        assert reply.binding[i] == ",".join(single.binding), i
        assert reply.solver[i] == single.solver, i
    assert reply.law == single.law
    return reply


@pytest.mark.parametrize(
    "caps",
    [{}, {"max_params": 1e11}, {"max_tokens": 3e12}, {"unique_tokens": 1e12, "max_epochs": 3.0}],
)
def test_budget_rows_equal_single_plans(
    stub: rpc.PlannerServiceStub, caps: dict[str, float]
) -> None:
    reply = assert_rows_match_single(stub, EPOCH, "budgets", BUDGETS, **caps)
    solvers = set(reply.solver)
    assert "closed_form" in solvers
    assert (solvers == {"closed_form"}) == (not caps)  # every cap binds for some budgets


def test_target_rows_equal_single_plans(stub: rpc.PlannerServiceStub) -> None:
    # max_params = 1e11 keeps the loss above 1.889: the cap binds for the lowest targets.
    targets = np.linspace(1.9, 2.6, 25)
    reply = assert_rows_match_single(stub, EPOCH, "target_losses", targets, max_params=1e11)
    assert {"closed_form", "target_loss"} <= set(reply.solver) | set(reply.binding)
    assert any(s.startswith("gp/") for s in reply.solver)


def test_other_forms_and_repeated_data(stub: rpc.PlannerServiceStub) -> None:
    assert_rows_match_single(stub, GADRE, "budgets", BUDGETS[::4])
    # data_constrained with unique tokens: every row a bounded scalar solve in the pool.
    reply = assert_rows_match_single(
        stub, MUENNIGHOFF, "budgets", np.array([1e21, 1e22, 3e22]), unique_tokens=25e9
    )
    assert set(reply.solver) == {"scalar/bounded"}
    assert_rows_match_single(
        stub, MUENNIGHOFF, "target_losses", np.array([2.3, 2.5]), unique_tokens=25e9
    )


def test_closed_form_is_chinchillas_formula(stub: rpc.PlannerServiceStub, family_name: str) -> None:
    """LAWS.md §1.7 (a) written out, on a family counting k = 8 FLOPs per param per token."""
    k = 8.0
    stub.CreateFamily(
        pb.CreateFamilyRequest(family=pb.Family(name=family_name, flops_per_param_token=k))
    )
    params = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    stub.PutLaw(pb.PutLawRequest(family=family_name, form="chinchilla", parameters=params))
    request = pb.PlanComputeOptimalBatchRequest(law=selector(family_name), budgets=BUDGETS)
    reply = stub.PlanComputeOptimalBatch(request, timeout=30)
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    n_opt = g * (BUDGETS / k) ** (BETA / (ALPHA + BETA))
    d_opt = BUDGETS / (k * n_opt)
    np.testing.assert_allclose(reply.params, n_opt, rtol=1e-9)
    np.testing.assert_allclose(reply.tokens, d_opt, rtol=1e-9)
    np.testing.assert_allclose(reply.loss, E + A / n_opt**ALPHA + B / d_opt**BETA, rtol=1e-9)
    np.testing.assert_allclose(reply.flops, BUDGETS, rtol=1e-12)
    assert set(reply.binding) == {"compute"} and set(reply.solver) == {"closed_form"}


# -- PredictBatch ------------------------------------------------------------------------------

POINT_PARAMS = np.geomspace(5e7, 7e10, 30)
POINT_TOKENS = POINT_PARAMS * np.linspace(4.0, 300.0, 30)


def ladder_runs() -> list[pb.Run]:
    """A small ladder on Epoch's surface with 1% deterministic scatter, for a bootstrap."""
    noise = np.random.default_rng(7).normal(scale=0.01, size=24)
    runs = []
    for i, (n, m) in enumerate((n, m) for n in np.geomspace(5e7, 2e9, 8) for m in (5, 20, 80)):
        d = m * n
        loss = (E + A / n**ALPHA + B / d**BETA) * np.exp(noise[i])
        runs.append(pb.Run(run_id=f"r{i}", params=n, tokens=d, loss=loss))
    return runs


@pytest.fixture(scope="module")
def fitted_family(stub: rpc.PlannerServiceStub) -> str:
    family = "t-batch-fitted"
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family)))
    stub.AddRuns(pb.AddRunsRequest(family=family, runs=ladder_runs()))
    events = list(
        stub.FitLaw(
            pb.FitLawRequest(family=family, method="vpnls", bootstrap=24, make_current=True),
            timeout=120,
        )
    )
    assert events[-1].law.ensemble_size == 24
    return family


def single_prediction(
    stub: rpc.PlannerServiceStub, family: str, i: int, unique: np.ndarray | None
) -> pb.PredictResponse:
    request = pb.PredictRequest(
        law=selector(family), params=POINT_PARAMS[i], tokens=POINT_TOKENS[i]
    )
    if unique is not None:
        request.unique_tokens = unique[i]
    reply: pb.PredictResponse = stub.Predict(request, timeout=30)
    return reply


def test_predictions_with_band_equal_single_predictions(
    stub: rpc.PlannerServiceStub, fitted_family: str
) -> None:
    request = pb.PredictBatchRequest(
        law=selector(fitted_family), params=POINT_PARAMS, tokens=POINT_TOKENS, with_band=True
    )
    reply = stub.PredictBatch(request, timeout=30)
    assert len(reply.loss) == len(reply.low) == len(reply.high) == POINT_PARAMS.size
    for i in range(POINT_PARAMS.size):
        single = single_prediction(stub, fitted_family, i, None)
        assert reply.loss[i] == pytest.approx(single.loss, rel=1e-12)
        assert single.interval_kind == pb.INTERVAL_KIND_BAND
        assert (reply.low[i], reply.high[i]) == pytest.approx(
            (single.interval.low, single.interval.high), rel=1e-12
        )
    assert reply.law == single.law


@pytest.mark.parametrize("family", [EPOCH, GADRE, MUENNIGHOFF])
def test_predictions_equal_single_predictions(stub: rpc.PlannerServiceStub, family: str) -> None:
    unique = POINT_TOKENS / 4 if family == MUENNIGHOFF else None
    request = pb.PredictBatchRequest(law=selector(family), params=POINT_PARAMS, tokens=POINT_TOKENS)
    if unique is not None:
        request.unique_tokens.extend(unique.tolist())
    reply = stub.PredictBatch(request, timeout=30)
    assert not reply.low and not reply.high
    for i in range(POINT_PARAMS.size):
        single = single_prediction(stub, family, i, unique)
        assert reply.loss[i] == pytest.approx(single.loss, rel=1e-12)


# -- bad input ---------------------------------------------------------------------------------


INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("fields", "code", "field", "match"),
    [
        ({}, INVALID, "budgets", "is empty"),
        ({"budgets": [1e21], "target_losses": [2.0]}, INVALID, "target_losses", "not both"),
        ({"budgets": [1e21, 1e22, NAN]}, INVALID, "budgets[2]", "NaN"),
        ({"budgets": [INF]}, INVALID, "budgets[0]", "finite"),
        ({"budgets": [1e21, 0.0]}, INVALID, "budgets[1]", "> 0"),
        ({"budgets": [-1e21]}, INVALID, "budgets[0]", "> 0"),
        ({"target_losses": [2.0, NAN]}, INVALID, "target_losses[1]", "NaN"),
        ({"target_losses": [2.0, 2.1, 1.5]}, FAILED, "target_losses[2]", "irreducible loss"),
        ({"target_losses": [2.0, E]}, FAILED, "target_losses[1]", "irreducible loss"),
        (
            {"target_losses": [2.0, 1.9], "max_params": 1e10},
            FAILED,
            "target_losses[1]",
            "cannot go below",
        ),
        (
            {"budgets": [1e21, 1e25], "max_params": 1e11, "max_tokens": 1e12},
            FAILED,
            "budgets[1]",
            "raise a cap",
        ),
        ({"budgets": [1e21], "max_params": -1.0}, INVALID, "max_params", "> 0"),
        ({"budgets": [1e21], "max_tokens": INF}, INVALID, "max_tokens", "finite"),
        ({"budgets": [1e21], "max_epochs": 2.0}, INVALID, "max_epochs", "needs unique_tokens"),
        (
            {"budgets": [1e21], "law": pb.LawSelector(family="nope")},
            grpc.StatusCode.NOT_FOUND,
            "law.family",
            "",
        ),
    ],
)
def test_bad_plan_batches(
    stub: rpc.PlannerServiceStub,
    fields: dict[str, Any],
    code: grpc.StatusCode,
    field: str,
    match: str,
) -> None:
    request = pb.PlanComputeOptimalBatchRequest(**{"law": selector(), **fields})
    refused(lambda: stub.PlanComputeOptimalBatch(request, timeout=30), code, field, match)


def test_row_caps(stub: rpc.PlannerServiceStub) -> None:
    too_many = np.full(MAX_BATCH_ROWS + 1, 1e21)
    request = pb.PlanComputeOptimalBatchRequest(law=selector(), budgets=too_many)
    refused(
        lambda: stub.PlanComputeOptimalBatch(request, timeout=30), INVALID, "budgets", "at most"
    )
    points = pb.PredictBatchRequest(law=selector(), params=too_many, tokens=[1.0])
    refused(lambda: stub.PredictBatch(points, timeout=30), INVALID, "params", "at most")
    # Every row needs a GP (the cap binds everywhere): refused before any solve.
    capped = np.geomspace(1e26, 1e27, MAX_SOLVED_ROWS + 1)
    request = pb.PlanComputeOptimalBatchRequest(law=selector(), budgets=capped, max_params=1e11)
    refused(lambda: stub.PlanComputeOptimalBatch(request, timeout=30), INVALID, "budgets", "solver")


@pytest.mark.parametrize(
    ("fields", "code", "field", "match"),
    [
        ({}, INVALID, "params", "is empty"),
        ({"params": [1e9, 2e9], "tokens": [1e10]}, INVALID, "tokens", "one per params"),
        (
            {"params": [1e9], "tokens": [1e10], "unique_tokens": [1e9, 1e9]},
            INVALID,
            "unique_tokens",
            "none or one per params",
        ),
        ({"params": [1e9, NAN], "tokens": [1e10, 1e10]}, INVALID, "params[1]", "NaN"),
        ({"params": [1e9], "tokens": [0.0]}, INVALID, "tokens[0]", "> 0"),
        (
            {"params": [1e9, 1e9], "tokens": [1e10, 1e10], "unique_tokens": [1e9, INF]},
            INVALID,
            "unique_tokens[1]",
            "finite",
        ),
        ({"params": [1e9], "tokens": [1e10], "with_band": True}, FAILED, "with_band", "ensemble"),
    ],
)
def test_bad_prediction_batches(
    stub: rpc.PlannerServiceStub,
    fields: dict[str, Any],
    code: grpc.StatusCode,
    field: str,
    match: str,
) -> None:
    request = pb.PredictBatchRequest(law=selector(), **fields)
    refused(lambda: stub.PredictBatch(request, timeout=30), code, field, match)


# -- the wire encoding -------------------------------------------------------------------------


def test_wire_encoding_round_trips() -> None:
    message = pb.PlanComputeOptimalBatchResponse
    values = np.array([1.5, -0.0, 1e300, np.nan, 5e-324])
    labels = Labels(np.array([0, 0, 1, 2, 2, 0]), ("compute", "compute,max_params", "é" * 200))
    parsed = message.FromString(
        wire.packed_doubles(message, "flops", values)
        + wire.repeated_strings(message, "binding", labels)
    )
    np.testing.assert_array_equal(np.asarray(parsed.flops), values)
    assert list(parsed.binding) == [labels[i] for i in range(6)]
    empty = Labels(np.array([], dtype=np.intp), ())
    assert wire.packed_doubles(message, "flops", np.array([])) == b""
    assert wire.repeated_strings(message, "binding", empty) == b""
