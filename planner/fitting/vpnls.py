"""Variable projection with non-negative least squares (LAWS.md §1.6).

For fixed (alpha, beta) the Chinchilla form is linear in (E, A, B), so the inner problem is an
NNLS solve and the search is over two exponents only: a coarse grid, then a Nelder-Mead refine.
It minimises squared error on raw loss (the MLE under additive Gaussian noise).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, nnls

from planner.errors import SolverFailed
from planner.fitting.data import Array, Runs
from planner.fitting.result import ChinchillaFit, diagnose
from planner.laws import ChinchillaLaw

EXPONENT_RANGE = (0.05, 1.0)
GRID = 32
FREE_PARAMETERS = 5


def _inner(runs: Runs, alpha: float, beta: float) -> tuple[Array, float]:
    """(E, A, B) >= 0 minimising the squared error at these exponents, and that error."""
    design = np.column_stack([np.ones_like(runs.params), runs.params**-alpha, runs.tokens**-beta])
    # Columns differ by orders of magnitude (N^-alpha ~ 1e-3): scale them to 1 for NNLS.
    scale = design.max(axis=0)
    coefficients, residual_norm = nnls(design / scale, runs.loss)
    return coefficients / scale, float(residual_norm) ** 2


def fit_vpnls(
    runs: Runs, grid: int = GRID, start: tuple[float, float] | None = None
) -> ChinchillaFit:
    """Fit E, A, B, alpha, beta by variable projection.

    `start` (alpha, beta) skips the grid: bootstrap resamples refine from the full-data fit.
    """
    runs.require_fittable(FREE_PARAMETERS)
    low, high = EXPONENT_RANGE
    if start is None:
        axis = np.linspace(low, high, grid)
        scores = np.array([[_inner(runs, a, b)[1] for b in axis] for a in axis])
        i, j = np.unravel_index(int(np.argmin(scores)), scores.shape)
        start = (float(axis[i]), float(axis[j]))

    def objective(point: Array) -> float:
        alpha, beta = float(point[0]), float(point[1])
        if not (low / 10 <= alpha <= 5 and low / 10 <= beta <= 5):
            return float("inf")
        return _inner(runs, alpha, beta)[1]

    refined = minimize(
        objective,
        np.array(start),
        method="Nelder-Mead",
        # fatol is absolute: 1e-15 is ~1e-14 of a real fit's squared error (~0.1).
        options={"xatol": 1e-9, "fatol": 1e-15, "maxiter": 5000},
    )
    alpha, beta = float(refined.x[0]), float(refined.x[1])
    (e, a, b), error = _inner(runs, alpha, beta)
    if not np.isfinite(error) or a <= 0 or b <= 0:
        raise SolverFailed(
            "VPNLS found no fit with positive A and B (the runs may not follow the form)"
        )
    law = ChinchillaLaw(E=float(e), A=float(a), B=float(b), alpha=alpha, beta=beta)
    on_bound = tuple(
        name for name, value in (("alpha", alpha), ("beta", beta)) if value <= low or value >= high
    ) + (("E",) if e <= 0 else ())
    return ChinchillaFit(law, "vpnls", error, diagnose(law, runs, on_bound))
