"""Forms fitted from runs and stored as versions (issue 9): the over-training law and broken
power laws, and Predict's two interval kinds. Raw stubs: the wire contract."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.server_process import ServerProcess

# Gadre et al. 2024, C4 fit (the catalogue's overtraining-gadre-2024-c4, LAWS.md §3.2).
GADRE_C4 = {"E": 1.5083, "a": 141.2772, "b": 189.5155, "eta": 0.12124}


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def gadre(n: float, d: float) -> float:
    """L(C, M) = E + (a M^eta + b M^-eta) C^-eta with C = 6 N D, M = D / N, written out."""
    c, m, p = 6 * n * d, d / n, GADRE_C4
    return p["E"] + (p["a"] * m ** p["eta"] + p["b"] * m ** -p["eta"]) * c ** -p["eta"]


def add(stub: rpc.PlannerServiceStub, family: str, rows: list[tuple[float, float, float]]) -> None:
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name=family)))
    runs = [
        pb.Run(run_id=f"r{i}", params=n, tokens=d, loss=loss) for i, (n, d, loss) in enumerate(rows)
    ]
    stub.AddRuns(pb.AddRunsRequest(family=family, runs=runs))


def fitted(stub: rpc.PlannerServiceStub, **fields: object) -> pb.Law:
    return list(stub.FitLaw(pb.FitLawRequest(**fields)))[-1].law  # type: ignore[arg-type]


def test_overtraining_form_is_fitted_and_plans(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    rows = [
        (n, m * n, gadre(n, m * n))
        for n in np.geomspace(1e8, 7e9, 6)
        for m in (5.0, 20.0, 80.0, 320.0)
    ]
    add(stub, family_name, rows)
    law = fitted(stub, family=family_name, form="overtraining", method="vpnls", bootstrap=0)
    assert law.form == "overtraining" and law.current
    for name, value in GADRE_C4.items():
        assert law.parameters[name] == pytest.approx(value, rel=1e-4), name
    plan = stub.PlanOvertraining(
        pb.PlanOvertrainingRequest(
            law=pb.LawSelector(family=family_name),
            budget=pb.ComputeBudget(flops=1e22),
            multiplier=20.0,
        )
    )
    n = (1e22 / (6 * 20.0)) ** 0.5  # N = sqrt(C / 6M)
    assert plan.loss == pytest.approx(gadre(n, 20.0 * n), rel=1e-4)


def test_broken_power_law_is_stored_and_predicts(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    # y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1) of x = 6 N D (LAWS.md §7), one break.
    a, b, c0, c1, d1, f1 = 1.7, 30.0, 0.05, 0.1, 1e20, 0.5

    def curve(x: float) -> float:
        return a + b * x**-c0 * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)

    sizes = np.geomspace(2e7, 5e9, 24)
    rows = [(n, 20.0 * n, curve(6 * n * 20.0 * n)) for n in sizes]
    add(stub, family_name, rows)
    law = fitted(stub, family=family_name, form="bnsl_compute", breaks=1, bootstrap=20, seed=2)
    assert law.form == "bnsl_compute" and law.options["breaks"] == "1"
    assert law.parameters["k"] == 6.0 and law.ensemble_size > 10
    prediction = stub.Predict(
        pb.PredictRequest(law=pb.LawSelector(family=family_name, form="bnsl_compute"),
                          params=1e10, tokens=2e11)
    )  # fmt: skip
    assert prediction.loss == pytest.approx(curve(6 * 1e10 * 2e11), rel=2e-3)
    assert prediction.interval_kind == pb.INTERVAL_KIND_BAND
    new_run = stub.Predict(
        pb.PredictRequest(law=pb.LawSelector(family=family_name, form="bnsl_compute"),
                          params=1e10, tokens=2e11, interval_kind=pb.INTERVAL_KIND_PREDICTION)
    )  # fmt: skip
    assert new_run.interval_kind == pb.INTERVAL_KIND_PREDICTION
    assert new_run.interval.low <= prediction.interval.low < prediction.interval.high
    assert prediction.interval.high <= new_run.interval.high
    with pytest.raises(grpc.RpcError) as caught:
        stub.PlanComputeOptimal(
            pb.PlanComputeOptimalRequest(
                law=pb.LawSelector(family=family_name, form="bnsl_compute"),
                budget=pb.ComputeBudget(flops=1e22),
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_prediction_interval_adds_the_residual_noise(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    rng = np.random.default_rng(11)
    law = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
    rows = []
    for n in np.geomspace(5e7, 3e9, 8):
        for m in (10.0, 20.0, 40.0):
            d = m * n
            clean = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]
            rows.append((n, d, clean * float(np.exp(rng.normal(scale=0.01)))))
    add(stub, family_name, rows)
    fit = fitted(stub, family=family_name, method="vpnls", bootstrap=60, seed=4)
    p = fit.parameters
    residuals = [
        np.log(p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]) - np.log(loss)
        for n, d, loss in rows
    ]
    sd = float(np.sqrt(np.sum(np.square(residuals)) / (len(rows) - 5)))
    assert fit.diagnostics.residual_sd_log_loss == pytest.approx(sd, rel=1e-6)

    def predict(kind: int) -> pb.PredictResponse:
        return stub.Predict(
            pb.PredictRequest(law=pb.LawSelector(family=family_name), params=1e10,
                              tokens=2e11, interval_kind=kind)
        )  # fmt: skip

    band = predict(pb.INTERVAL_KIND_BAND)
    new_run = predict(pb.INTERVAL_KIND_PREDICTION)
    assert band.interval_kind == pb.INTERVAL_KIND_BAND
    assert new_run.interval_kind == pb.INTERVAL_KIND_PREDICTION
    assert new_run.interval.low < band.interval.low < band.interval.high < new_run.interval.high
    # At least the noise alone: +-1.96 sd on log loss around the prediction.
    width = np.log(new_run.interval.high / new_run.interval.low)
    assert width >= 2 * 1.96 * sd * 0.99
