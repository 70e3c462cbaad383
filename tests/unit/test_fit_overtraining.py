"""Fitting Gadre's over-training law from runs, against the catalogue's C4 law and against an
independent scipy fit written here in the (C, M) parameterisation (no Chinchilla form)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from planner.catalog import CATALOG
from planner.errors import SolverFailed
from planner.fitting.chinchilla import resample_indices
from planner.fitting.data import Runs
from planner.fitting.options import FitOptions
from planner.fitting.overtraining import (
    OVERTRAINING_PARAMETERS,
    bootstrap_overtraining,
    fit_overtraining,
    from_chinchilla,
)
from planner.laws import ChinchillaLaw, OvertrainingLaw


def gadre_c4() -> OvertrainingLaw:
    """The catalogue's C4 law without its downstream-error link (not fitted from losses)."""
    family = next(f for f in CATALOG if f.name == "overtraining-gadre-2024-c4")
    values = family.laws[0].parameters
    return OvertrainingLaw(**{name: values[name] for name in OVERTRAINING_PARAMETERS})


def gadre_loss(theta: np.ndarray, compute: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """L(C, M) = E + (a M^eta + b M^-eta) C^-eta, written out (LAWS.md §3.2)."""
    e, a, b, eta = theta
    return np.asarray(e + (a * multiplier**eta + b * multiplier**-eta) * compute**-eta)


def design(law: OvertrainingLaw, noise: float = 0.0, seed: int = 0) -> Runs:
    """Gadre-like grid: 6 sizes 10M..3B, token multipliers 5..320 (over-trained runs)."""
    n, m = np.meshgrid(np.logspace(7, 9.5, 6), [5.0, 20.0, 80.0, 320.0])
    params, tokens = n.ravel(), (n * m).ravel()
    clean = gadre_loss(
        np.array([law.E, law.a, law.b, law.eta]), 6 * params * tokens, tokens / params
    )
    scatter = np.exp(np.random.default_rng(seed).normal(scale=noise, size=clean.size))
    return Runs.of(params, tokens, clean * scatter)


@pytest.mark.parametrize("method", ["vpnls", "huber"])
def test_noise_free_runs_recover_the_catalogue_law(method: str) -> None:
    """Huber refines from a perturbed start (its whole-grid search takes ~30 s here)."""
    truth = gadre_c4()
    start = None
    if method == "huber":
        start = OvertrainingLaw(E=1.4, a=120.0, b=220.0, eta=0.11)
    fit = fit_overtraining(design(truth), method, start=start)
    values = fit.law.to_mapping()
    assert values == pytest.approx(truth.to_mapping(), rel=2e-4)
    assert fit.method == method
    assert fit.chinchilla.law.alpha == fit.chinchilla.law.beta == pytest.approx(2 * truth.eta)
    assert fit.diagnostics.rmse_log_loss < 1e-5


def test_noisy_runs_match_an_independent_fit_in_c_and_m() -> None:
    """VPNLS minimises squared error on raw loss; least squares on L(C, M) over (E, a, b, eta)
    from a different start must reach the same law."""
    truth = gadre_c4()
    runs = design(truth, noise=0.01, seed=3)
    fit = fit_overtraining(runs, "vpnls")
    compute, multiplier = 6 * runs.params * runs.tokens, runs.tokens / runs.params
    independent = least_squares(
        lambda theta: gadre_loss(theta, compute, multiplier) - runs.loss,
        x0=np.array([1.0, 100.0, 100.0, 0.2]),
        bounds=([0.0, 0.0, 0.0, 0.0], [np.inf, np.inf, np.inf, 2.5]),
        x_scale=np.array([1.0, 100.0, 100.0, 0.1]),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=20_000,
    )
    got = np.array([getattr(fit.law, name) for name in OVERTRAINING_PARAMETERS])
    assert got == pytest.approx(independent.x, rel=1e-4)
    # The noise moved the fit off the truth: the check above is not the noise-free one again.
    assert abs(got[3] / truth.eta - 1) > 1e-4
    assert fit.objective == pytest.approx(2 * independent.cost, rel=1e-6)


def test_options_pass_through_tied() -> None:
    """A fixed E is honoured; alpha = beta is imposed even when the options do not ask."""
    truth = gadre_c4()
    runs = design(truth, noise=0.01, seed=4)
    fit = fit_overtraining(runs, "vpnls", FitOptions.of(fixed={"E": 1.5}))
    assert fit.law.E == 1.5
    assert fit.chinchilla.law.alpha == fit.chinchilla.law.beta


def test_conversion_is_exact_both_ways() -> None:
    truth = gadre_c4()
    back = from_chinchilla(truth.as_chinchilla())
    assert back.to_mapping() == pytest.approx(truth.to_mapping(), rel=1e-14)
    with pytest.raises(SolverFailed, match="alpha = beta"):
        from_chinchilla(ChinchillaLaw(E=1.7, A=400.0, B=400.0, alpha=0.3, beta=0.31))


def test_bootstrap_rows_are_refits_of_each_resample() -> None:
    truth = gadre_c4()
    runs = design(truth, noise=0.01, seed=5)
    start = fit_overtraining(runs).law
    indices = list(resample_indices(len(runs), 4, seed=7))
    indices.append(np.zeros(len(runs), dtype=np.intp))  # one run repeated: nothing to fit
    rows = bootstrap_overtraining(runs, "vpnls", indices, start)
    assert rows.shape == (5, 4)
    assert np.all(np.isnan(rows[-1]))
    for index, row in zip(indices[:-1], rows[:-1], strict=True):
        law = fit_overtraining(runs.subset(index), "vpnls", start=start).law
        assert row == pytest.approx([law.E, law.a, law.b, law.eta], rel=1e-12)
