"""The compute_power form L(C) = L_inf + A (C + C0)^-alpha: stored, predicted through C = k N D,
refused by plans, and fitted (parameters recovered from points made here, LAION's published
CLIP curve, and the Chinchilla runs' lower envelope against Epoch's published fit)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.fitting.compute_power import bootstrap_compute_power, fit_compute_power
from planner.fitting.data import Runs
from planner.fitting.jobs import FitJob
from planner.forms import KINDS
from planner.laws import DEFAULT_FORM_ORDER, ComputePowerLaw, parse_law, predict_loss
from planner.laws.compute_power import COLUMNS
from planner.uncertainty import chinchilla_rows, row_losses

# Cherti et al. 2023 (LAION), CLIP ImageNet zero-shot error vs GFLOPs: a (x + b)^c + d.
CLIP_A, CLIP_B, CLIP_C, CLIP_D = 57.862083, 18.391321, -0.226604, 0.111169


def test_the_form_is_a_final_loss_form_after_the_chinchilla_and_bnsl_forms() -> None:
    assert KINDS["compute_power"] == "final_loss"
    assert DEFAULT_FORM_ORDER[-1] == "compute_power"  # a family's default law is unchanged
    assert DEFAULT_FORM_ORDER.index("bnsl_tokens") < DEFAULT_FORM_ORDER.index("compute_power")


def test_predict_goes_through_c_equals_k_n_d() -> None:
    law = parse_law("compute_power", {"L_inf": 1.7, "A": 3000.0, "alpha": 0.17, "k": 8.0})
    n, d = 1e9, 2e10
    assert predict_loss(law, n, d, None) == pytest.approx(1.7 + 3000.0 * (8.0 * n * d) ** -0.17)
    offset = parse_law("compute_power", {"L_inf": 0.1, "A": 2.0, "alpha": 0.5, "C0": 1e18})
    assert predict_loss(offset, n, d, None) == pytest.approx(0.1 + 2.0 * (6 * n * d + 1e18) ** -0.5)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"L_inf": 1.0, "A": -1.0, "alpha": 0.2}, "parameters.A"),
        ({"L_inf": 1.0, "A": 1.0, "alpha": 0.0}, "parameters.alpha"),
        ({"L_inf": 1.0, "A": 1.0, "alpha": 0.2, "C0": -1.0}, "parameters.C0"),
        ({"L_inf": math.nan, "A": 1.0, "alpha": 0.2}, "parameters.L_inf"),
        ({"A": 1.0, "alpha": 0.2}, "parameters.L_inf"),
        ({"L_inf": 1.0, "A": 1.0, "alpha": 0.2, "E": 1.0}, "parameters.E"),
    ],
)
def test_bad_parameters_are_named(values: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_law("compute_power", values)
    assert caught.value.field == field


def test_plans_refuse_it_and_its_ensemble_has_no_chinchilla_rows() -> None:
    law = ComputePowerLaw(L_inf=1.0, A=1.0, alpha=0.2)
    with pytest.raises(Infeasible, match="no N/D split"):
        law.as_chinchilla()
    with pytest.raises(Infeasible):
        chinchilla_rows("compute_power", np.ones((3, 4)))


def test_ensemble_rows_predict_like_the_law() -> None:
    rows = np.array([[1.7, 3000.0, 0.17, 0.0], [1.6, 2000.0, 0.15, 1e17]])
    n, d, k = 1e9, 2e10, 6.0
    by_hand = [1.7 + 3000.0 * (k * n * d) ** -0.17, 1.6 + 2000.0 * (k * n * d + 1e17) ** -0.15]
    assert row_losses("compute_power", rows, n, d, k=k) == pytest.approx(by_hand)


def test_fit_recovers_a_plain_power_law() -> None:
    compute = np.logspace(18, 23, 12)
    loss = 1.7 + 3000.0 * compute**-0.17
    fit = fit_compute_power(compute, loss)
    assert not fit.offset and fit.law.C0 == 0
    assert (fit.law.L_inf, fit.law.A, fit.law.alpha) == pytest.approx((1.7, 3000.0, 0.17), rel=1e-6)


def test_fit_recovers_an_offset_where_the_data_reach_it() -> None:
    compute = np.logspace(2, 8, 15)
    loss = 1.7 + 40.0 * (compute + 1e3) ** -0.3
    fit = fit_compute_power(compute, loss)
    assert fit.offset
    assert fit.law.row() == pytest.approx((1.7, 40.0, 0.3, 1e3), rel=1e-5)


def test_fit_recovers_laions_clip_curve_over_its_gflops() -> None:
    """Sampled at 1e8-1e12 GFLOPs, where b = 18 GFLOPs changes no loss beyond 1e-7: the fit
    recovers a, c, d and reports no offset."""
    gflops = np.logspace(8, 12, 20)
    error = CLIP_A * (gflops + CLIP_B) ** CLIP_C + CLIP_D
    fit = fit_compute_power(gflops, error)
    assert fit.law.L_inf == pytest.approx(CLIP_D, rel=1e-4)
    assert fit.law.A == pytest.approx(CLIP_A, rel=1e-4)
    assert fit.law.alpha == pytest.approx(-CLIP_C, rel=1e-4)
    assert fit.law.C0 == 0.0


def _chinchilla_envelope(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The lowest loss at each quarter-decade of training FLOPs (the compute frontier)."""
    with (shared_data / "chinchilla_epoch_svg_extracted.csv").open() as handle:
        rows = [(float(r["Training FLOP"]), float(r["loss"])) for r in csv.DictReader(handle)]
    best: dict[float, tuple[float, float]] = {}
    for flops, loss in rows:
        level = round(math.log10(flops) * 4)
        if level not in best or loss < best[level][1]:
            best[level] = (flops, loss)
    compute, loss = zip(*best.values(), strict=True)
    return np.array(compute), np.array(loss)


def test_fit_on_the_chinchilla_frontier_matches_epochs_fit(shared_data: Path) -> None:
    """On the compute-optimal frontier a Chinchilla law is L = E + G C^-(alpha beta / (alpha +
    beta)); Besiroglu et al. 2024's replication (E = 1.8172, alpha = 0.3478, beta = 0.3658)
    gives the exponent 0.178. The frontier's lowest loss bounds L_inf from above."""
    compute, loss = _chinchilla_envelope(shared_data)
    assert compute.size >= 12
    fit = fit_compute_power(compute, loss)
    exponent = 0.3478 * 0.3658 / (0.3478 + 0.3658)
    assert fit.law.alpha == pytest.approx(exponent, abs=0.02)
    assert 1.6 < fit.law.L_inf < min(loss)
    assert abs(fit.law.L_inf - 1.8172) < 0.1
    assert fit.diagnostics.rmse_log_loss < 0.01


def test_bootstrap_of_noise_free_points_gives_the_law_in_every_row() -> None:
    compute = np.logspace(18, 23, 12)
    loss = 1.7 + 3000.0 * compute**-0.17
    start = fit_compute_power(compute, loss).law
    rng = np.random.default_rng(1)
    samples = [rng.integers(0, compute.size, compute.size) for _ in range(10)]
    rows = bootstrap_compute_power(compute, loss, samples, start)
    assert rows.shape == (10, len(COLUMNS))
    usable = rows[np.isfinite(rows[:, 0])]
    assert len(usable) >= 8
    assert usable == pytest.approx(np.tile([1.7, 3000.0, 0.17, 0.0], (len(usable), 1)), rel=1e-4)


def test_a_fit_job_uses_each_runs_flops_else_k_n_d() -> None:
    """The runs measured 7.5 N D FLOPs (say, attention counted); the family's k is 6."""
    params = np.logspace(7, 10, 10)
    tokens = 20 * params
    flops = 7.5 * params * tokens
    loss = 1.7 + 3000.0 * flops**-0.17
    runs = Runs.of(params, tokens, loss)
    job = FitJob(runs, form="compute_power", compute=flops, flops_per_param_token=6.0)
    fitted = job.validated().fit()
    assert fitted.law.to_mapping() == pytest.approx(
        {"L_inf": 1.7, "A": 3000.0, "alpha": 0.17, "C0": 0.0, "k": 6.0}, rel=1e-6
    )
    assert job.parameter_names(fitted.law) == COLUMNS
    # Without measured FLOPs the law is in 6 N D = 0.8 C: A (0.8 C)^-0.17 = 3000 C^-0.17.
    without = FitJob(runs, form="compute_power", flops_per_param_token=6.0).validated().fit()
    assert without.law.A == pytest.approx(3000.0 * 1.25**-0.17, rel=1e-6)
    assert without.law.alpha == pytest.approx(0.17, rel=1e-6)


@pytest.mark.parametrize(
    ("change", "field"), [({"method": "vpnls"}, "method"), ({"breaks": 1}, "breaks")]
)
def test_a_fit_job_refuses_other_settings(change: dict[str, object], field: str) -> None:
    runs = Runs.of([1e8, 1e9, 1e10, 1e11], [2e9, 2e10, 2e11, 2e12], [3.0, 2.6, 2.3, 2.1])
    with pytest.raises(InvalidInput) as caught:
        FitJob(runs, form="compute_power", **change).validated()  # type: ignore[arg-type]
    assert caught.value.field == field
