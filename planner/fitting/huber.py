"""Hoffmann et al.'s Approach-3 recipe (LAWS.md §1.3), vectorised.

Huber loss (delta 1e-3) on log loss with the log-sum-exp parameterisation
LSE(a - alpha ln N, b - beta ln D, e), minimised by L-BFGS. The recipe starts L-BFGS from each
of 4,500 grid points; here the objective is evaluated on the whole grid at once (one numpy
pass) and L-BFGS, with the analytic gradient, runs only from the best starts.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from planner.errors import SolverFailed
from planner.fitting.data import Array, Runs
from planner.fitting.result import ChinchillaFit, diagnose
from planner.laws import ChinchillaLaw

DELTA = 1e-3
FREE_PARAMETERS = 5
# Hoffmann's grid: a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, ..., 2}.
START_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 30.0, 5.0),
            np.arange(0.0, 30.0, 5.0),
            np.arange(-1.0, 1.5, 0.5),
            np.arange(0.0, 2.5, 0.5),
            np.arange(0.0, 2.5, 0.5),
        )
    )
)
LOCAL_STARTS = 30


def _huber(residual: Array, delta: float) -> Array:
    size = np.abs(residual)
    return np.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta))


def _objective_and_gradient(
    theta: Array, log_n: Array, log_d: Array, log_l: Array, delta: float
) -> tuple[float, Array]:
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_l
    weights /= total
    slope = np.clip(residual, -delta, delta)  # Huber's derivative
    gradient = np.array(
        [
            np.dot(slope, weights[0]),
            np.dot(slope, weights[1]),
            np.dot(slope, weights[2]),
            -np.dot(slope * weights[0], log_n),
            -np.dot(slope * weights[1], log_d),
        ]
    )
    return float(_huber(residual, delta).sum()), gradient


def _grid_objective(starts: Array, log_n: Array, log_d: Array, log_l: Array, delta: float) -> Array:
    a, b, e, alpha, beta = (starts[:, k : k + 1] for k in range(5))
    prediction = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    return np.asarray(_huber(prediction - log_l, delta).sum(axis=1))


def fit_huber(
    runs: Runs,
    delta: float = DELTA,
    local_starts: int = LOCAL_STARTS,
    start: ChinchillaLaw | None = None,
) -> ChinchillaFit:
    """Fit by Huber-on-log-loss multistart L-BFGS; the objective is the summed Huber loss.

    `start` (e.g. the full-data fit, for bootstrap resamples) is tried besides the grid's best.
    """
    runs.require_fittable(FREE_PARAMETERS)
    log_n, log_d, log_l = np.log(runs.params), np.log(runs.tokens), np.log(runs.loss)
    screened = _grid_objective(START_GRID, log_n, log_d, log_l, delta)
    starts = [START_GRID[i] for i in np.argsort(screened)[:local_starts]]
    if start is not None:
        starts.insert(
            0,
            np.array(
                [
                    np.log(start.A),
                    np.log(start.B),
                    np.log(max(start.E, 1e-12)),
                    start.alpha,
                    start.beta,
                ]
            ),
        )
    best = None
    for point in starts:
        result = minimize(
            _objective_and_gradient,
            point,
            args=(log_n, log_d, log_l, delta),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.fun < best.fun):
            best = result
    if best is None:
        raise SolverFailed("no L-BFGS start converged to a finite fit")
    a, b, e, alpha, beta = (float(v) for v in best.x)
    if not (0 < alpha <= 5 and 0 < beta <= 5):
        raise SolverFailed(
            f"the Huber fit ended at exponents alpha = {alpha:.4g}, beta = {beta:.4g}, outside "
            "(0, 5]: the runs do not determine the law"
        )
    law = ChinchillaLaw(
        E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta
    )
    return ChinchillaFit(law, "huber", float(best.fun), diagnose(law, runs))
