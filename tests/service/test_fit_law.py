"""FitLaw on a real server: Epoch's 240 Chinchilla runs in, a stored fitted version out."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import BudgetJob, Run
from tests.unit.test_fit_data_constrained import C4, PUBLISHED_OBJECTIVE, STAGE2, muennighoff_runs
from tests.unit.test_fitting import epoch_240

# Epoch's bootstrap 95% intervals on the same data (shared/data/README.md).
EPOCH_INTERVALS = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def add_epoch_runs(client: PlannerClient, family: str, data_dir: Path) -> None:
    runs = epoch_240(data_dir)
    client.create_family(family)
    client.add_runs(
        family,
        [
            Run(f"svg-{i}", float(n), float(d), float(loss))
            for i, (n, d, loss) in enumerate(zip(runs.params, runs.tokens, runs.loss, strict=True))
        ],
    )


def test_huber_fit_is_stored_with_intervals(
    client: PlannerClient, family_name: str, data_dir: Path
) -> None:
    add_epoch_runs(client, family_name, data_dir)
    progress: list[tuple[str, int, int]] = []
    law = client.fit_law(
        family_name,
        method="huber",
        bootstrap=40,
        seed=3,
        on_progress=lambda *event: progress.append(event),
    )
    assert progress[:2] == [("fit", 0, 1), ("fit", 1, 1)]
    bootstrap = [done for stage, done, total in progress if stage == "bootstrap" and total == 40]
    assert len(bootstrap) >= 4 and bootstrap == sorted(bootstrap) and bootstrap[-1] == 40
    assert (law.form, law.version, law.method) == ("chinchilla", 1, "huber")
    assert law.parameters["E"] == pytest.approx(1.8172, rel=5e-4)
    assert law.parameters["alpha"] == pytest.approx(0.34731, rel=5e-4)
    assert law.parameters["beta"] == pytest.approx(0.36718, rel=5e-4)
    assert law.diagnostics["runs"] == 240 and len(law.run_ids) == 240
    assert law.ensemble_size + law.diagnostics["failed_resamples"] == 40
    for name, (low, high) in EPOCH_INTERVALS.items():
        mine = law.intervals[name]
        assert mine[0] < law.parameters[name] < mine[1]
        assert mine[0] < high and low < mine[1], (name, mine)  # the intervals overlap
    assert law.options == {"bootstrap": "40", "seed": "3", "checkpoints": "final"}
    assert client.get_law(family_name) == law
    # The new version answers queries at once, with intervals from its ensemble.
    plan = client.plan_compute_optimal(family_name, compute=5.76e23)
    assert plan.law.version == 1 and plan.law.method == "huber"
    assert set(plan.intervals) == {"params", "tokens", "loss", "flops"}
    band = plan.intervals["params"]
    assert band.p5 < band.p50 < band.p95 and band.p95 / band.p5 < 10
    assert band.p5 < plan.params < band.p95
    flops = plan.intervals["flops"]
    assert (flops.p5, flops.p50, flops.p95) == pytest.approx((5.76e23,) * 3, rel=1e-9)
    # Inference-aware plans get bands too, each row solved on its own.
    lifetime = client.plan_inference(family_name, 1e13, target_loss=2.2)
    assert set(lifetime.intervals) == {"params", "tokens", "loss", "total_flops", "cost"}
    band = lifetime.intervals["params"]
    assert band.p5 < lifetime.plan.params < band.p95
    assert lifetime.intervals["loss"].p50 == pytest.approx(2.2, rel=1e-9)
    # So do budget splits: bands for every job once one of them has an ensemble.
    split = client.allocate_budget(
        [BudgetJob("fitted", family_name), BudgetJob("published", "inference-sardana-2023")], 1e24
    )
    for job in split.jobs:
        assert set(job.intervals) == {"flops", "params", "tokens", "loss"}
        assert job.intervals["flops"].p5 <= job.flops <= job.intervals["flops"].p95
    prediction = client.predict(family_name, 7e10, 1.4e12)
    assert prediction.interval is not None
    assert prediction.interval[0] < prediction.loss < prediction.interval[1]


def test_fit_refusals_store_nothing(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.add_runs(
        family_name, [Run(f"r{i}", 1e9 * (i + 1), 2e10, 3.0 - i / 10) for i in range(4)]
    )
    with pytest.raises(PlannerClientError) as caught:
        client.fit_law(family_name, bootstrap=0)
    assert (
        caught.value.code == "FAILED_PRECONDITION" and "cannot determine 5" in caught.value.message
    )
    for kwargs, field in (({"method": "magic"}, "method"), ({"bootstrap": 5000}, "bootstrap")):
        with pytest.raises(PlannerClientError) as caught:
            client.fit_law(family_name, **kwargs)  # type: ignore[arg-type]
        assert caught.value.code == "INVALID_ARGUMENT"
        assert [v.field for v in caught.value.violations] == [field]
    with pytest.raises(PlannerClientError) as caught:
        client.fit_law(family_name, form="bnsl")
    assert caught.value.code == "UNIMPLEMENTED"
    assert client.list_law_versions(family_name) == []


def test_backtest_below_1e21(client: PlannerClient, family_name: str, data_dir: Path) -> None:
    """Fit below 1e21 FLOPs (the 217 points of LAWS.md §1.6), predict the 23 above."""
    add_epoch_runs(client, family_name, data_dir)
    result = client.backtest(family_name, 1e21, ("vpnls", "huber"))
    assert (result.train_runs, result.test_runs) == (217, 23)
    assert [m.method for m in result.methods] == ["vpnls", "huber"]
    vpnls = result.methods[0]
    assert vpnls.failure == ""
    assert vpnls.parameters["E"] == pytest.approx(1.9051, abs=1e-4)
    assert vpnls.parameters["beta"] == pytest.approx(0.4587, abs=1e-4)
    law = vpnls.parameters
    errors = []
    for run in vpnls.runs:
        assert run.flops >= 1e21
        n = next(r for r in client.list_runs(family_name) if r.run_id == run.run_id)
        predicted = (
            law["E"] + law["A"] / n.params ** law["alpha"] + law["B"] / n.tokens ** law["beta"]
        )
        assert run.predicted_loss == pytest.approx(predicted, rel=1e-12)
        assert run.relative_error == pytest.approx(predicted / run.observed_loss - 1, rel=1e-9)
        errors.append(abs(run.relative_error))
    assert vpnls.mean_abs_relative_error == pytest.approx(sum(errors) / len(errors), rel=1e-12)
    assert [r.flops for r in vpnls.runs] == sorted(r.flops for r in vpnls.runs)
    assert client.list_law_versions(family_name) == []  # nothing stored


def test_backtest_refusals(client: PlannerClient, family_name: str, data_dir: Path) -> None:
    add_epoch_runs(client, family_name, data_dir)
    for cut, match in ((1e30, "nothing would be held out"), (1.0, "nothing to fit on")):
        with pytest.raises(PlannerClientError, match=match) as caught:
            client.backtest(family_name, cut)
        assert caught.value.code == "FAILED_PRECONDITION"
    with pytest.raises(PlannerClientError) as caught:
        client.backtest(family_name, 1e21, ("magic",))
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == ["methods[0]"]
    # Too few runs below the cut for a method: that method reports why, the call succeeds.
    result = client.backtest(family_name, 2e18)
    assert all(m.failure and not m.runs for m in result.methods)


def test_data_constrained_fit_on_the_published_runs(
    client: PlannerClient, family_name: str, data_dir: Path
) -> None:
    """Muennighoff's 182 runs with the C4 Chinchilla part as the family's law: the stored
    data_constrained version fits R_D*, R_N* with it held fixed, and plans repeated data."""
    runs = muennighoff_runs(data_dir, STAGE2)
    client.create_family(family_name)
    assert runs.unique is not None
    client.add_runs(
        family_name,
        [
            Run(f"m{i}", float(n), float(d), float(loss), unique_tokens=float(u))
            for i, (n, d, loss, u) in enumerate(
                zip(runs.params, runs.tokens, runs.loss, runs.unique, strict=True)
            )
        ],
    )
    with pytest.raises(PlannerClientError) as caught:
        client.fit_law(family_name, form="data_constrained", base="law", bootstrap=0)
    assert caught.value.code == "FAILED_PRECONDITION" and "needs a chinchilla law" in str(
        caught.value.message
    )
    client.put_law(family_name, "chinchilla", C4.to_mapping())
    law = client.fit_law(family_name, form="data_constrained", bootstrap=12, seed=1)
    assert (law.form, law.version) == ("data_constrained", 1)
    assert law.options["base"] == "law" and law.options["base_law"] == "chinchilla v1"
    for name, value in C4.to_mapping().items():
        assert law.parameters[name] == pytest.approx(value, rel=1e-12)
    assert law.diagnostics["objective"] < PUBLISHED_OBJECTIVE
    assert law.ensemble_size + law.diagnostics["failed_resamples"] == 12
    assert set(law.intervals) == {"E", "A", "B", "alpha", "beta", "r_d_star", "r_n_star"}
    plan = client.plan_compute_optimal(
        family_name, form="data_constrained", compute=1e22, unique_tokens=25e9
    )
    assert plan.solver == "scalar/bounded" and plan.epochs is not None
    assert set(plan.intervals) == {"params", "tokens", "loss", "flops", "epochs"}
    prediction = client.predict(family_name, 6.34e9, 242e9, 25e9, form="data_constrained")
    assert prediction.interval is not None
    assert prediction.interval[0] <= prediction.loss <= prediction.interval[1]
    # Runs without unique tokens cannot be fitted by this form.
    client.add_runs(family_name, [Run("no-u", 1e9, 2e10, 3.0)])
    with pytest.raises(PlannerClientError) as caught:
        client.fit_law(family_name, form="data_constrained", bootstrap=0)
    assert caught.value.code == "FAILED_PRECONDITION" and "lack unique_tokens" in str(
        caught.value.message
    )
