"""Chinchilla-form fitters against published fits on real data and a noise-free surface."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.fitting.data import Runs
from planner.fitting.huber import fit_huber
from planner.fitting.result import squared_error
from planner.fitting.vpnls import fit_vpnls
from planner.laws import ChinchillaLaw
from planner.planning import closed_form


def epoch_240(data_dir: Path) -> Runs:
    """Epoch's digitised Chinchilla runs, 5 highest-loss points dropped, D = C / 6N."""
    with (data_dir / "chinchilla_epoch_svg_extracted.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    params = np.array([float(r["Model Size"]) for r in rows])
    flops = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(loss)[:-5]
    return Runs.of(params[keep], flops[keep] / (6 * params[keep]), loss[keep])


@pytest.fixture(scope="module")
def runs_240(shared_data: Path) -> Runs:
    runs = epoch_240(shared_data)
    assert len(runs) == 240
    return runs


@pytest.fixture(scope="module")
def huber_240(runs_240: Runs) -> ChinchillaLaw:
    return fit_huber(runs_240).law


def test_huber_reproduces_the_hoffmann_recipe_on_epoch_data(huber_240: ChinchillaLaw) -> None:
    """Published: E 1.8172, A 477.84, B 2143.86, alpha 0.34731, beta 0.36718 (Besiroglu et al.
    re-running Hoffmann's grid + L-BFGS on the same 240 points). 3 s.f. on E, alpha, beta."""
    assert huber_240.E == pytest.approx(1.8172, rel=5e-4)
    assert huber_240.alpha == pytest.approx(0.34731, rel=5e-4)
    assert huber_240.beta == pytest.approx(0.36718, rel=5e-4)
    assert huber_240.A == pytest.approx(477.84, rel=5e-3)
    assert huber_240.B == pytest.approx(2143.86, rel=5e-3)


def test_vpnls_objective_no_worse_than_huber(runs_240: Runs, huber_240: ChinchillaLaw) -> None:
    fit = fit_vpnls(runs_240)
    assert fit.objective == pytest.approx(squared_error(fit.law, runs_240), rel=1e-9)
    assert fit.objective <= squared_error(huber_240, runs_240)
    assert fit.diagnostics.runs == 240 and fit.diagnostics.rmse_log_loss < 0.05


def noise_free_surface() -> tuple[ChinchillaLaw, Runs]:
    """LAWS.md §11.4 design: budgets 1e17..1e21, 15 points per budget log-spaced in D over
    D*/8 .. 8 D* around the true optimum, on the Chinchilla surface."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    params, tokens = [], []
    for compute in np.logspace(17, 21, 5):
        _, d_opt = closed_form.optimal_allocation(law, compute)
        d = d_opt * np.logspace(-np.log10(8), np.log10(8), 15)
        tokens.extend(d)
        params.extend(compute / (6 * d))
    n, d = np.array(params), np.array(tokens)
    return law, Runs.of(n, d, law.predict(n, d))


def test_vpnls_recovers_a_noise_free_surface_to_six_figures() -> None:
    truth, runs = noise_free_surface()
    fit = fit_vpnls(runs)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit.law, name) == pytest.approx(getattr(truth, name), rel=5e-6), name
    assert fit.objective < 1e-15


def test_fitters_refuse_unfittable_runs() -> None:
    with pytest.raises(Infeasible, match="cannot determine 5"):
        fit_vpnls(Runs.of([1e9, 2e9, 3e9], [1e10, 2e10, 3e10], [3.0, 2.9, 2.8]))
    same_n = Runs.of([1e9] * 8, np.logspace(10, 11, 8), np.linspace(3, 2.5, 8))
    with pytest.raises(Infeasible, match="same params") as caught:
        fit_huber(same_n)
    assert caught.value.field == "runs.params"
    with pytest.raises(InvalidInput, match="finite"):
        Runs.of([1e9, float("nan")], [1e10, 1e10], [3.0, 3.0])
    with pytest.raises(InvalidInput, match="> 0"):
        Runs.of([1e9, -1.0], [1e10, 1e10], [3.0, 3.0])


def test_vpnls_matches_the_published_fit_below_1e21(runs_240: Runs) -> None:
    """LAWS.md §1.6 (Czech 2026): VPNLS on the 217 points with C < 1e21 gives E 1.9051,
    alpha 0.3511, beta 0.4587, A_raw ~ 511, B_raw ~ 14,121."""
    below = runs_240.subset(np.flatnonzero(6 * runs_240.params * runs_240.tokens < 1e21))
    assert len(below) == 217
    law = fit_vpnls(below).law
    assert law.E == pytest.approx(1.9051, abs=1e-4)
    assert law.alpha == pytest.approx(0.3511, abs=1e-4)
    assert law.beta == pytest.approx(0.4587, abs=1e-4)
    assert law.A == pytest.approx(511, rel=2e-3)
    assert law.B == pytest.approx(14_121, rel=2e-3)
