"""Approach 2 (IsoFLOP parabolas): exact on symmetric surfaces, biased intercept otherwise
(LAWS.md §1.6, §11.4), and the Chinchilla IsoFLOP data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.errors import Infeasible
from planner.fitting.isoflop import fit_isoflop
from planner.laws import ChinchillaLaw
from planner.planning import closed_form


def design(law: ChinchillaLaw, width: float) -> tuple[np.ndarray, ...]:
    """§11.4 protocol: budgets 1e17..1e21, 15 points per budget log-spaced in D over
    D*/width .. width D* around the true optimum; noise-free losses."""
    n, d, c = [], [], []
    for compute in np.logspace(17, 21, 5):
        _, d_opt = closed_form.optimal_allocation(law, compute)
        tokens = d_opt * np.logspace(-np.log10(width), np.log10(width), 15)
        d.extend(tokens)
        n.extend(compute / (6 * tokens))
        c.extend([compute] * 15)
    params, tokens = np.array(n), np.array(d)
    return params, tokens, law.predict(params, tokens), np.array(c)


def test_exact_on_a_symmetric_surface() -> None:
    law = ChinchillaLaw(E=1.69, A=400.0, B=400.0, alpha=0.31, beta=0.31)
    fit = fit_isoflop(*design(law, 8.0))
    assert fit.params_exponent == pytest.approx(0.5, abs=1e-9)
    expected = closed_form.optimal_allocation(law, 1e24)
    assert fit.optimal(1e24) == pytest.approx(expected, rel=1e-6)


def test_biased_intercept_on_the_chinchilla_surface() -> None:
    """alpha != beta: the exponent stays right, the intercept does not; a wider grid is worse."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    exact_n, _ = closed_form.optimal_allocation(law, 1e24)
    errors = []
    for width in (2.0, 8.0, 16.0):
        fit = fit_isoflop(*design(law, width))
        assert fit.params_exponent == pytest.approx(0.28 / 0.62, abs=1e-6)
        errors.append(abs(fit.optimal(1e24)[0] / exact_n - 1))
    assert errors[0] < errors[1] < errors[2]
    assert errors[1] > 1e-3


def test_chinchilla_isoflop_data(shared_data: Path) -> None:
    """Hoffmann et al. Approach 2: 9 budgets 6e18..3e21, a = 0.49 (CI 0.462-0.534)."""
    with (shared_data / "chinchilla_isoflops_ml_scalefit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    fit = fit_isoflop(
        [float(r["params"]) for r in rows],
        [float(r["tokens"]) for r in rows],
        [float(r["loss"]) for r in rows],
        [float(r["budget"]) for r in rows],
    )
    assert fit.budgets[0] == 6e18 and fit.budgets[-1] == 3e21 and len(fit.budgets) == 9
    assert 0.462 <= fit.params_exponent <= 0.534
    assert fit.params_exponent + fit.tokens_exponent == pytest.approx(1.0, abs=1e-9)
    assert "biased" in fit.caveat


def test_too_few_budgets() -> None:
    with pytest.raises(Infeasible, match="at least 3 compute budgets") as caught:
        fit_isoflop([1e8, 2e8, 3e8], [1e9, 1e9, 1e9], [3.0, 2.9, 3.1], [1e18, 1e18, 1e18])
    assert "found 3 runs in 1 budgets (runs per budget: 3)" in caught.value.message


def test_two_profiles_are_refused_not_fitted() -> None:
    """Two vertices always lie on a line: the old rule printed an exponent from them."""
    law = ChinchillaLaw(E=1.69, A=400.0, B=400.0, alpha=0.31, beta=0.31)
    params, tokens, loss, budgets = design(law, 8.0)
    two = budgets <= 1e18 * 1.0001  # the 1e17 and 1e18 profiles, 15 runs each
    plus_stragglers = two | ((np.arange(budgets.size) % 15 < 2) & (budgets > 1e18 * 1.0001))
    with pytest.raises(Infeasible) as caught:
        fit_isoflop(params[two], tokens[two], loss[two], budgets[two])
    assert "found 30 runs in 2 budgets (runs per budget: 15, 15), 2 of them" in str(caught.value)
    # Three more budgets of two runs each still leave only two usable profiles.
    with pytest.raises(Infeasible, match=r"runs per budget: 15, 15, 2, 2, 2\), 2 of them"):
        fit_isoflop(
            params[plus_stragglers],
            tokens[plus_stragglers],
            loss[plus_stragglers],
            budgets[plus_stragglers],
        )
    three = budgets <= 1e19 * 1.0001
    assert len(fit_isoflop(params[three], tokens[three], loss[three], budgets[three]).budgets) == 3


def test_lump_of_runs_without_profiles() -> None:
    """Five runs along one line, each its own budget: no profile at all."""
    n = 1e8 * 4.0 ** np.arange(5)
    d = 2e9 * 4.0 ** np.arange(5)
    with pytest.raises(Infeasible, match=r"5 budgets \(runs per budget: 1, 1, 1, 1, 1\), 0 of"):
        fit_isoflop(n, d, 3.0 - np.arange(5) / 5, 6 * n * d)
