"""Fit options (row weights, tied exponents, fixed parameters, the over-estimate penalty) in
both Chinchilla-form methods, each against an independent computation written here: scipy's
minimisers or least squares on the objective as the options define it, NNLS on the full
design, or the known parameters of a noise-free surface."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from scipy.optimize import least_squares, minimize, nnls

from planner.errors import Infeasible, InvalidInput
from planner.fitting import huber
from planner.fitting.chinchilla import bootstrap_fits, fit_chinchilla, resample_indices
from planner.fitting.data import Runs
from planner.fitting.huber import fit_huber
from planner.fitting.options import FitOptions
from planner.fitting.vpnls import fit_vpnls
from planner.laws import ChinchillaLaw

TRUTH = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
DELTA = 1e-3
NAMES = ("E", "A", "B", "alpha", "beta")
Objective = Callable[[np.ndarray], float]


def sample(
    seed: int, rows: int = 60, noise: float = 1e-3, truth: ChinchillaLaw = TRUTH
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """Runs spread over 3 decades of N and 2 of tokens per parameter, multiplicative noise."""
    rng = np.random.default_rng(seed)
    n = 10 ** rng.uniform(7, 10, rows)
    d = n * 10 ** rng.uniform(0.5, 2.5, rows)
    return n, d, truth.predict(n, d) * np.exp(rng.normal(0, noise, rows)), rng


def vector(law: ChinchillaLaw) -> np.ndarray:
    return np.array([getattr(law, name) for name in NAMES])


# --- Huber: the objective as the options define it, minimised by scipy from the truth --------


def huber_rows(residual: np.ndarray) -> np.ndarray:
    size = np.abs(residual)
    return np.where(size <= DELTA, 0.5 * residual**2, DELTA * (size - 0.5 * DELTA))


def huber_objective(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    weights: np.ndarray | None = None,
    penalty: float = 1.0,
) -> Callable[[ChinchillaLaw], float]:
    """sum w_i c_i Huber(ln predicted_i - ln observed_i), c_i = penalty where the law
    over-predicts (predicted > observed), else 1."""
    w = np.ones_like(loss) if weights is None else weights

    def value(law: ChinchillaLaw) -> float:
        residual = np.log(law.predict(n, d)) - np.log(loss)
        return float(np.sum(w * np.where(residual > 0, penalty, 1.0) * huber_rows(residual)))

    return value


def reference_minimum(objective: Objective, start: np.ndarray) -> np.ndarray:
    """BFGS, then Nelder-Mead restarts with tight tolerances (the Huber loss has kinks in its
    second derivative that stall BFGS's finite differences)."""
    point = minimize(objective, start, method="BFGS").x
    for _ in range(3):
        point = minimize(
            objective,
            point,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-17, "maxiter": 10_000, "maxfev": 10_000},
        ).x
    return np.asarray(point)


def assert_same_minimum(
    ours: ChinchillaLaw, reference: ChinchillaLaw, value: Callable[[ChinchillaLaw], float]
) -> None:
    """Ours is no worse than the reference and sits at the same point."""
    assert value(ours) <= value(reference) * (1 + 1e-9)
    np.testing.assert_allclose(vector(ours), vector(reference), rtol=2e-5)


def test_huber_row_weights_match_scipy_on_the_weighted_huber_sum() -> None:
    n, d, loss, rng = sample(0)
    weights = rng.uniform(0.2, 5.0, n.size)
    value = huber_objective(n, d, loss, weights)

    def objective(t: np.ndarray) -> float:
        return value(
            ChinchillaLaw(E=np.exp(t[2]), A=np.exp(t[0]), B=np.exp(t[1]), alpha=t[3], beta=t[4])
        )

    start = np.array([np.log(TRUTH.A), np.log(TRUTH.B), np.log(TRUTH.E), TRUTH.alpha, TRUTH.beta])
    t = reference_minimum(objective, start)
    reference = ChinchillaLaw(E=np.exp(t[2]), A=np.exp(t[0]), B=np.exp(t[1]), alpha=t[3], beta=t[4])
    # Weights summing to anything: 37x the same weights give the same fit.
    fit = fit_huber(Runs.of(n, d, loss, weights=37 * weights))
    assert_same_minimum(fit.law, reference, value)
    # The objective is reported with weights scaled to mean 1.
    assert fit.objective == pytest.approx(value(fit.law) * n.size / weights.sum(), rel=1e-9)


def test_huber_overestimate_penalty_matches_scipy_on_the_asymmetric_huber_sum() -> None:
    n, d, loss, _ = sample(1)
    value = huber_objective(n, d, loss, penalty=4.0)

    def law_of(t: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=np.exp(t[2]), A=np.exp(t[0]), B=np.exp(t[1]), alpha=t[3], beta=t[4])

    start = np.array([np.log(TRUTH.A), np.log(TRUTH.B), np.log(TRUTH.E), TRUTH.alpha, TRUTH.beta])
    reference = law_of(reference_minimum(lambda t: value(law_of(t)), start))
    runs = Runs.of(n, d, loss)
    fit = fit_huber(runs, options=FitOptions.of(overestimate_penalty=4.0))
    assert_same_minimum(fit.law, reference, value)
    # The point of the penalty: fewer runs over-predicted than by the symmetric fit.
    symmetric = fit_huber(runs).law
    assert np.sum(fit.law.predict(n, d) > loss) < np.sum(symmetric.predict(n, d) > loss)


def test_huber_tied_exponents_match_scipy_over_one_exponent() -> None:
    truth = ChinchillaLaw(E=1.69, A=400.0, B=400.0, alpha=0.31, beta=0.31)
    n, d, loss, _ = sample(2, truth=truth)
    value = huber_objective(n, d, loss)

    def law_of(t: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=np.exp(t[2]), A=np.exp(t[0]), B=np.exp(t[1]), alpha=t[3], beta=t[3])

    start = np.array([np.log(400.0), np.log(400.0), np.log(1.69), 0.31])
    reference = law_of(reference_minimum(lambda t: value(law_of(t)), start))
    fit = fit_huber(Runs.of(n, d, loss), options=FitOptions.of(tie_exponents=True))
    assert fit.law.alpha == fit.law.beta
    assert_same_minimum(fit.law, reference, value)


def test_huber_fixed_e_zero_drops_the_e_term() -> None:
    truth = ChinchillaLaw(E=0.0, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
    n, d, loss, _ = sample(3, truth=truth)
    value = huber_objective(n, d, loss)

    def law_of(t: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=0.0, A=np.exp(t[0]), B=np.exp(t[1]), alpha=t[2], beta=t[3])

    start = np.array([np.log(480.0), np.log(2100.0), 0.35, 0.37])
    reference = law_of(reference_minimum(lambda t: value(law_of(t)), start))
    fit = fit_huber(Runs.of(n, d, loss), options=FitOptions.of(fixed={"E": 0.0}))
    assert fit.law.E == 0.0
    assert_same_minimum(fit.law, reference, value)


def test_huber_fixed_a_and_beta_fit_the_other_three() -> None:
    n, d, loss, _ = sample(4)
    value = huber_objective(n, d, loss)
    fixed = {"A": 500.0, "beta": 0.36}

    def law_of(t: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=np.exp(t[1]), A=500.0, B=np.exp(t[0]), alpha=t[2], beta=0.36)

    start = np.array([np.log(TRUTH.B), np.log(TRUTH.E), TRUTH.alpha])
    reference = law_of(reference_minimum(lambda t: value(law_of(t)), start))
    fit = fit_huber(Runs.of(n, d, loss), options=FitOptions.of(fixed=fixed))
    assert (fit.law.A, fit.law.beta) == (500.0, 0.36)
    assert_same_minimum(fit.law, reference, value)


def test_huber_tie_with_one_exponent_fixed_fixes_both() -> None:
    n, d, loss, _ = sample(5)
    value = huber_objective(n, d, loss)

    def law_of(t: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=np.exp(t[2]), A=np.exp(t[0]), B=np.exp(t[1]), alpha=0.3, beta=0.3)

    start = np.array([np.log(TRUTH.A), np.log(TRUTH.B), np.log(TRUTH.E)])
    reference = law_of(reference_minimum(lambda t: value(law_of(t)), start))
    options = FitOptions.of(tie_exponents=True, fixed={"alpha": 0.3})
    assert options.free_parameters == 3
    fit = fit_huber(Runs.of(n, d, loss), options=options)
    assert (fit.law.alpha, fit.law.beta) == (0.3, 0.3)
    assert_same_minimum(fit.law, reference, value)


# --- VPNLS: scipy least squares on the (weighted, asymmetric) raw-loss residuals -------------


def raw_residuals(
    n: np.ndarray, d: np.ndarray, loss: np.ndarray, weights: np.ndarray, penalty: float
) -> Callable[[ChinchillaLaw], np.ndarray]:
    """sqrt(w_i c_i) (predicted_i - observed_i): their sum of squares is the objective."""

    def residuals(law: ChinchillaLaw) -> np.ndarray:
        r = law.predict(n, d) - loss
        return np.asarray(np.sqrt(weights * np.where(r > 0, penalty, 1.0)) * r)

    return residuals


def least_squares_law(
    residuals: Callable[[ChinchillaLaw], np.ndarray],
    law_of: Callable[[np.ndarray], ChinchillaLaw],
    start: np.ndarray,
) -> ChinchillaLaw:
    result = least_squares(
        lambda p: residuals(law_of(p)),
        start,
        x_scale=np.abs(start),
        bounds=(np.zeros_like(start), np.full_like(start, np.inf)),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=20_000,
    )
    return law_of(result.x)


def five(p: np.ndarray) -> ChinchillaLaw:
    return ChinchillaLaw(E=p[0], A=p[1], B=p[2], alpha=p[3], beta=p[4])


def tied(p: np.ndarray) -> ChinchillaLaw:
    return ChinchillaLaw(E=p[0], A=p[1], B=p[2], alpha=p[3], beta=p[3])


@pytest.mark.parametrize("penalty", [1.0, 4.0])
def test_vpnls_weights_and_penalty_match_least_squares(penalty: float) -> None:
    n, d, loss, rng = sample(6, rows=80, noise=0.01)
    weights = rng.uniform(0.2, 5.0, n.size)
    residuals = raw_residuals(n, d, loss, weights, penalty)
    reference = least_squares_law(residuals, five, vector(TRUTH))
    options = FitOptions.of(overestimate_penalty=penalty)
    fit = fit_vpnls(Runs.of(n, d, loss, weights=0.01 * weights), options=options)
    np.testing.assert_allclose(vector(fit.law), vector(reference), rtol=2e-6)
    reported = np.sum(residuals(fit.law) ** 2) * n.size / weights.sum()
    assert fit.objective == pytest.approx(reported, rel=1e-9)


def test_vpnls_tied_exponents_match_least_squares() -> None:
    n, d, loss, _ = sample(7, rows=80, noise=0.01)
    residuals = raw_residuals(n, d, loss, np.ones_like(loss), 1.0)

    reference = least_squares_law(residuals, tied, np.array([1.8, 480.0, 2100.0, 0.36]))
    fit = fit_vpnls(Runs.of(n, d, loss), options=FitOptions.of(tie_exponents=True))
    assert fit.law.alpha == fit.law.beta
    np.testing.assert_allclose(vector(fit.law), vector(reference), rtol=2e-6)


def test_vpnls_fixed_a_and_beta_match_least_squares_on_the_rest() -> None:
    n, d, loss, _ = sample(8, rows=80, noise=0.01)
    residuals = raw_residuals(n, d, loss, np.ones_like(loss), 1.0)

    def law_of(p: np.ndarray) -> ChinchillaLaw:
        return ChinchillaLaw(E=p[0], A=500.0, B=p[1], alpha=p[2], beta=0.36)

    reference = least_squares_law(residuals, law_of, np.array([1.8, 2100.0, 0.35]))
    options = FitOptions.of(fixed={"A": 500.0, "beta": 0.36})
    fit = fit_vpnls(Runs.of(n, d, loss), options=options)
    assert (fit.law.A, fit.law.beta) == (500.0, 0.36)
    np.testing.assert_allclose(vector(fit.law), vector(reference), rtol=2e-6)


def test_vpnls_with_both_exponents_pinned_is_one_nnls_solve() -> None:
    """Tied, alpha fixed: beta = alpha, and E, A, B are NNLS on the full design."""
    n, d, loss, _ = sample(9, rows=80, noise=0.01)
    options = FitOptions.of(tie_exponents=True, fixed={"alpha": 0.3})
    fit = fit_vpnls(Runs.of(n, d, loss), options=options)
    coefficients, _ = nnls(np.column_stack([np.ones_like(n), n**-0.3, d**-0.3]), loss)
    assert (fit.law.alpha, fit.law.beta) == (0.3, 0.3)
    np.testing.assert_allclose(vector(fit.law)[:3], coefficients, rtol=1e-9)


# --- Noise-free surfaces: the known parameters come back ------------------------------------


def noise_free(law: ChinchillaLaw) -> Runs:
    n, d, _, _ = sample(10, rows=75, noise=0.0, truth=law)
    return Runs.of(n, d, law.predict(n, d))


@pytest.mark.parametrize("method", ["vpnls", "huber"])
@pytest.mark.parametrize(
    ("truth", "options"),
    [
        # LAWS.md §1.6's symmetric surface, with the exponents tied.
        (ChinchillaLaw(E=1.69, A=400.0, B=400.0, alpha=0.31, beta=0.31), {"tie_exponents": True}),
        (TRUTH, {"fixed": {"E": 1.8}}),
        (TRUTH, {"fixed": {"alpha": 0.35, "B": 2100.0}}),
        (TRUTH, {"fixed": {"E": 1.8, "A": 480.0, "B": 2100.0}}),
        (ChinchillaLaw(E=0.0, A=480.0, B=2100.0, alpha=0.35, beta=0.37), {"fixed": {"E": 0.0}}),
    ],
)
def test_noise_free_surfaces_are_recovered_under_options(
    method: str, truth: ChinchillaLaw, options: dict[str, object]
) -> None:
    fit = fit_chinchilla(noise_free(truth), method, options=FitOptions.of(**options))  # type: ignore[arg-type]
    np.testing.assert_allclose(vector(fit.law), vector(truth), rtol=1e-5, atol=1e-9)


# --- Weights: scale-free, and an integer weight is that many copies of the row ---------------


@pytest.mark.parametrize("method", ["vpnls", "huber"])
def test_integer_weights_equal_repeated_rows(method: str) -> None:
    n, d, loss, rng = sample(11, rows=40, noise=0.003)
    counts = rng.integers(1, 4, n.size)
    repeated = np.repeat(np.arange(n.size), counts)
    weighted = fit_chinchilla(Runs.of(n, d, loss, weights=counts.astype(float)), method).law
    copies = fit_chinchilla(Runs.of(n[repeated], d[repeated], loss[repeated]), method).law
    np.testing.assert_allclose(vector(weighted), vector(copies), rtol=1e-5)


# --- Diagnostics ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vpnls", "huber"])
def test_residual_sd_is_the_weighted_rms_per_degree_of_freedom(method: str) -> None:
    n, d, loss, rng = sample(12, rows=50, noise=0.01)
    weights = rng.uniform(0.5, 2.0, n.size)
    options = FitOptions.of(tie_exponents=True)
    fit = fit_chinchilla(Runs.of(n, d, loss, weights=weights), method, options=options)
    residual = np.log(fit.law.predict(n, d)) - np.log(loss)
    scaled = weights * n.size / weights.sum()
    expected = np.sqrt(np.sum(scaled * residual**2) / (n.size - 4))
    assert fit.diagnostics.residual_sd_log_loss == pytest.approx(expected, rel=1e-12)
    assert fit.diagnostics.rmse_log_loss == pytest.approx(np.sqrt(np.mean(residual**2)))


def test_vpnls_names_e_at_zero_and_an_exponent_past_the_grid_on_bound() -> None:
    # Loss below the pure power laws: the best E would be negative, NNLS holds it at 0. And
    # alpha = 1.3 lies past the grid's top (1.0).
    n, d, _, _ = sample(13, rows=60, noise=0.0)
    loss = 3e8 * n**-1.3 + 2100.0 * d**-0.37 - 0.02
    fit = fit_vpnls(Runs.of(n, d, loss))
    assert fit.law.E == 0.0
    assert set(fit.diagnostics.on_bound) == {"alpha", "E"}


# --- Options and the run count they need -------------------------------------------------------


def test_free_parameters_set_how_many_runs_are_needed() -> None:
    options = FitOptions.of(tie_exponents=True, fixed={"E": 1.8, "A": 480.0})
    assert options.free_parameters == 2
    two = Runs.of([1e8, 1e9], [1e10, 3e10], [3.0, 2.6])
    with pytest.raises(Infeasible, match="cannot determine 2"):
        fit_vpnls(two, options=options)
    three = Runs.of([1e8, 1e9, 3e9], [1e10, 3e10, 1e11], [3.0, 2.6, 2.4])
    law = fit_vpnls(three, options=options).law
    assert (law.E, law.A) == (1.8, 480.0) and law.alpha == law.beta


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fixed": {"gamma": 1.0}}, "fixed.gamma"),
        ({"fixed": {"E": -1.0}}, "fixed.E"),
        ({"fixed": {"alpha": 6.0}}, "fixed.alpha"),
        ({"tie_exponents": True, "fixed": {"alpha": 0.3, "beta": 0.4}}, "tie_exponents"),
        # Tied with one exponent fixed fixes the other: nothing left to fit.
        ({"tie_exponents": True, "fixed": {"E": 1, "A": 1, "B": 1, "alpha": 0.3}}, "fixed"),
        ({"overestimate_penalty": 0.0}, "overestimate_penalty"),
    ],
)
def test_bad_options_are_invalid_input(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        FitOptions.of(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_fits_validate_options_built_directly() -> None:
    runs = noise_free(TRUTH)
    with pytest.raises(InvalidInput, match="fixed twice"):
        fit_huber(runs, options=FitOptions(fixed=(("E", 1.0), ("E", 2.0))))


# --- Bootstrap over clusters of rows ----------------------------------------------------------


@pytest.mark.parametrize("method", ["vpnls", "huber"])
def test_bootstrap_takes_ragged_cluster_samples_and_the_options(method: str) -> None:
    n, d, loss, rng = sample(14, rows=60, noise=0.005)
    groups = np.arange(60) // 4  # 15 training runs of 4 checkpoints each
    runs = Runs.of(n, d, loss, groups=groups)
    options = FitOptions.of(tie_exponents=True)
    full = fit_chinchilla(runs, method, options=options).law
    # Three draws of 15 whole runs, and one of a single checkpoint (cannot be fitted).
    samples = [
        np.concatenate([np.flatnonzero(groups == g) for g in rng.integers(0, 15, 15)])
        for _ in range(3)
    ] + [np.zeros(6, dtype=np.intp)]
    rows = bootstrap_fits(runs, method, samples, full, options)
    assert rows.shape == (4, 5)
    assert np.all(np.isfinite(rows[:3])) and np.all(np.isnan(rows[3]))
    np.testing.assert_array_equal(rows[:3, 3], rows[:3, 4])  # alpha = beta in every refit
    # A 2-D array of row draws (the plain bootstrap) is a sequence of samples too.
    assert bootstrap_fits(runs, method, resample_indices(60, 2, seed=0), full).shape == (2, 5)
    if method == "vpnls":  # each row is its sample's own least-squares fit
        for row, index in zip(rows[:3], samples[:3], strict=True):
            residuals = raw_residuals(n[index], d[index], loss[index], np.ones(index.size), 1.0)
            reference = least_squares_law(residuals, tied, row[:4])
            np.testing.assert_allclose(row, vector(reference), rtol=1e-5)


# --- Huber's start screening: exact, and bounded in memory ----------------------------------


def direct_screen(
    starts: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, w: np.ndarray, pen: float
) -> np.ndarray:
    out = []
    for a, b, e, alpha, beta in starts:
        r = np.logaddexp(np.logaddexp(a - alpha * np.log(n), b - beta * np.log(d)), e)
        r = r - np.log(loss)
        out.append(np.sum(w * np.where(r > 0, pen, 1.0) * huber_rows(r)))
    return np.array(out)


@pytest.mark.parametrize("rows", [300, 2500])
def test_screening_in_blocks_matches_a_direct_evaluation(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,000-element blocks: 300 rows take 3 starts a block, 2,500 rows split the rows too.
    monkeypatch.setattr(huber, "BLOCK_ELEMENTS", 1000)
    n, d, loss, rng = sample(15, rows=rows, noise=0.02)
    weights = rng.uniform(0.5, 2.0, rows)
    starts = huber.START_GRID[rng.choice(len(huber.START_GRID), 40, replace=False)]
    starts[0, 2] = -np.inf  # E fixed at 0
    got = huber.screen(
        starts, np.log(n), np.log(d), np.log(loss), DELTA, weights=weights, penalty=3.0
    )
    np.testing.assert_allclose(got, direct_screen(starts, n, d, loss, weights, 3.0), rtol=1e-10)


def test_screening_memory_stays_bounded_with_many_rows() -> None:
    rows = 300_000
    n, d, loss, _ = sample(16, rows=rows, noise=0.01)
    logs = np.log(n), np.log(d), np.log(loss)
    starts = huber.START_GRID[:64]  # all at once: 64 x 300,000 x 8 B = 154 MB per temporary
    tracemalloc.start()
    huber.screen(starts, *logs, DELTA)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16e6
