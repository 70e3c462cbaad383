"""Variable projection with non-negative least squares (LAWS.md §1.6), with the fit options.

For fixed (alpha, beta) the Chinchilla form is linear in (E, A, B), so the inner problem is an
NNLS solve and the search is over the exponents only: a coarse grid, then a Nelder-Mead refine
(two exponents) or a bounded scalar refine (one: tied, or the other fixed). It minimises
squared error on raw loss (the MLE under additive Gaussian noise).

Options: row weights make it weighted least squares (rows scaled by sqrt(w)); fixed E, A, B
are subtracted from the target before NNLS on the others; a fixed exponent is not searched.
The over-estimate penalty weights the squared error of rows the law over-predicts; the inner
problem stays convex and is solved by iterated reweighting (see _asymmetric_nnls).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dgeqrf
from scipy.optimize import minimize, minimize_scalar, nnls

from planner.errors import SolverFailed
from planner.fitting.data import Array, Runs
from planner.fitting.options import DEFAULT_OPTIONS, MAX_EXPONENT, FitOptions
from planner.fitting.result import ChinchillaFit, diagnose, fit_weights
from planner.laws import ChinchillaLaw

EXPONENT_RANGE = (0.05, 1.0)
# A fitted E below this fraction of the smallest loss sits on its bound 0.
E_AT_ZERO = 1e-6
# Where the refine may go (a grid edge is a start, not a wall).
SEARCH_LIMITS = (EXPONENT_RANGE[0] / 10, MAX_EXPONENT)
GRID = 32
FREE_PARAMETERS = 5
LINEAR_NAMES = ("E", "A", "B")
# Reweighting rounds of the asymmetric inner problem; the sign pattern settles in a handful.
MAX_REWEIGHTS = 50


def _weighted_nnls(system: Array, root: Array | None) -> tuple[Array, float]:
    """x >= 0 minimising sum w (X x - y)^2, and that minimum. `system` holds the columns of
    X (all positive) then y, one per row; `root` is sqrt(w) (None: all 1).

    The rows are reduced first: with [X y] = QR, ||Xx - y||^2 = ||R11 x - r12||^2 + r22^2,
    so NNLS sees a (k+1) x k system whatever the row count.
    """
    k = system.shape[0] - 1
    work = system * root if root is not None else system.copy()
    # Columns differ by orders of magnitude (N^-alpha ~ 1e-3): scale them to 1 for NNLS.
    scale = work[:k].max(axis=1)
    work[:k] /= scale[:, None]
    # LAPACK's QR in place on the column-major view: no copy of the n x (k+1) matrix.
    factored, _, _, info = dgeqrf(work.T, overwrite_a=1)
    if info != 0:
        raise SolverFailed(f"the QR factorisation of the VPNLS design failed (info {info})")
    reduced = np.zeros((k + 1, k + 1))
    filled = min(k + 1, system.shape[1])
    reduced[:filled] = np.triu(factored[:filled])
    if k == 0:
        return np.zeros(0), float(reduced[0, 0] ** 2)
    coefficients, residual_norm = nnls(reduced[:k, :k], reduced[:k, k])
    return coefficients / scale, float(residual_norm**2 + reduced[k, k] ** 2)


def _asymmetric_nnls(
    system: Array, weights: Array, penalty: float, factor: Array
) -> tuple[Array, float]:
    """x >= 0 minimising sum w c(r) r^2 with r = X x - y, c = penalty where r > 0.

    The objective is convex and continuously differentiable, so a weighted NNLS whose weights
    agree with the signs of its own residuals is the minimum: reweight until they agree (the
    expectile-regression iteration), keeping the best iterate should it ever cycle. `factor`
    is the first guess of c per row; it is left holding the last pattern, which starts the
    next call (nearby exponents: the pattern barely moves, one or two solves suffice).
    """
    design, target = system[:-1], system[-1]
    best: tuple[Array, float] | None = None
    for _ in range(MAX_REWEIGHTS):
        coefficients, _ = _weighted_nnls(system, np.sqrt(weights * factor))
        residual = coefficients @ design - target
        updated = np.where(residual > 0, penalty, 1.0)
        value = float(np.dot(weights * updated, residual**2))
        if best is None or value < best[1]:
            best = (coefficients, value)
        if np.array_equal(updated, factor):
            break
        factor[:] = updated
    assert best is not None
    return best


@dataclass(frozen=True)
class _Problem:
    """The runs in the form the inner solve uses, and the options that shape it."""

    log_n: Array
    log_d: Array
    loss: Array
    weights: Array
    root: Array | None  # sqrt(weights); None when all are 1
    penalty: float
    pinned: dict[str, float]
    # The over-estimate pattern (c per row) of the last inner solve, to start the next one.
    pattern: Array

    @classmethod
    def of(cls, runs: Runs, options: FitOptions) -> _Problem:
        weights = fit_weights(runs)
        return cls(
            np.log(runs.params),
            np.log(runs.tokens),
            runs.loss,
            weights,
            None if runs.weights is None else np.sqrt(weights),
            options.overestimate_penalty,
            options.pinned,
            np.ones_like(runs.loss),
        )

    def inner(self, alpha: float, beta: float) -> tuple[dict[str, float], float]:
        """(E, A, B) >= 0 (fixed ones as given) minimising the objective at these exponents."""
        columns = {
            "E": np.ones_like(self.loss),
            "A": np.exp(-alpha * self.log_n),
            "B": np.exp(-beta * self.log_d),
        }
        free = [name for name in LINEAR_NAMES if name not in self.pinned]
        # One row per free coefficient's column, then the target: loss less the fixed terms.
        system = np.empty((len(free) + 1, self.loss.size))
        for row, name in enumerate(free):
            system[row] = columns[name]
        target = system[-1]
        target[:] = self.loss
        for name in LINEAR_NAMES:
            if name in self.pinned:
                target -= self.pinned[name] * columns[name]
        if self.penalty == 1.0:
            coefficients, error = _weighted_nnls(system, self.root)
        else:
            coefficients, error = _asymmetric_nnls(system, self.weights, self.penalty, self.pattern)
        values = dict(self.pinned)
        values.update(zip(free, (float(c) for c in coefficients), strict=True))
        return values, error


@dataclass(frozen=True)
class _Search:
    """The exponent coordinates searched: both, one (tied, or the other fixed), or none."""

    names: tuple[str, ...]  # "alpha", "beta" or "alpha=beta"
    pinned: dict[str, float]

    @classmethod
    def of(cls, options: FitOptions) -> _Search:
        if options.shares_exponent:
            return cls(("alpha=beta",), options.pinned)
        return cls(tuple(n for n in ("alpha", "beta") if n not in options.pinned), options.pinned)

    def exponents(self, point: Array) -> tuple[float, float]:
        values = dict(self.pinned)
        for name, value in zip(self.names, point, strict=True):
            for part in name.split("="):
                values[part] = float(value)
        return values["alpha"], values["beta"]


def _search_2d(
    error: Callable[[Array], float], grid: int, start: tuple[float, float] | None
) -> Array:
    """A grid x grid scan (unless given a start), then Nelder-Mead within SEARCH_LIMITS."""
    low, high = EXPONENT_RANGE
    if start is None:
        axis = np.linspace(low, high, grid)
        scores = np.array([[error(np.array([a, b])) for b in axis] for a in axis])
        i, j = np.unravel_index(int(np.argmin(scores)), scores.shape)
        start = (float(axis[i]), float(axis[j]))

    def bounded(point: Array) -> float:
        inside = all(SEARCH_LIMITS[0] <= v <= SEARCH_LIMITS[1] for v in point)
        return error(point) if inside else math.inf

    # Converged when the simplex is 1e-9 wide (xatol) and its errors agree; fatol is absolute,
    # so it scales with the start's error to stay above the error's rounding noise (~1e-13 of
    # it with thousands of rows: a fixed 1e-15 then is never met and the search runs to
    # maxiter).
    point = np.clip(np.array(start), *SEARCH_LIMITS)
    fatol = max(1e-15, 1e-10 * bounded(point))
    refined = minimize(
        bounded,
        point,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": fatol, "maxiter": 5000},
    )
    return np.asarray(refined.x, dtype=np.float64)


def _search_1d(error: Callable[[Array], float], grid: int) -> Array:
    """Grid, then Brent's bounded search between the best point's neighbours (to the search
    limits past a grid edge). Cheap enough to run whole for bootstrap resamples too."""
    axis = np.linspace(*EXPONENT_RANGE, grid)
    scores = [error(np.array([x])) for x in axis]
    i = int(np.argmin(scores))
    lower = axis[i - 1] if i > 0 else SEARCH_LIMITS[0]
    upper = axis[i + 1] if i + 1 < grid else SEARCH_LIMITS[1]
    refined = minimize_scalar(
        lambda x: error(np.array([x])),
        bounds=(lower, upper),
        method="bounded",
        options={"xatol": 1e-10},
    )
    best = float(refined.x) if refined.fun <= scores[i] else float(axis[i])
    return np.array([best])


def fit_vpnls(
    runs: Runs,
    grid: int = GRID,
    start: tuple[float, float] | None = None,
    options: FitOptions = DEFAULT_OPTIONS,
) -> ChinchillaFit:
    """Fit E, A, B, alpha, beta by variable projection; the objective is
    sum w_i c_i (predicted_i - observed_i)^2, w the row weights scaled to mean 1 and
    c_i = options.overestimate_penalty where the law over-predicts row i (else 1).

    `start` (alpha, beta) skips the 2-D grid: bootstrap resamples refine from the full-data
    fit. A 1-D search always runs its (cheap) grid.
    """
    options = options.validated()
    runs.require_fittable(options.free_parameters)
    problem = _Problem.of(runs, options)
    search = _Search.of(options)

    def error(point: Array) -> float:
        return problem.inner(*search.exponents(point))[1]

    if len(search.names) == 2:
        point = _search_2d(error, grid, start)
    elif len(search.names) == 1:
        point = _search_1d(error, grid)
    else:
        point = np.zeros(0)
    alpha, beta = search.exponents(point)
    values, _ = problem.inner(alpha, beta)
    if not (values["A"] > 0 and values["B"] > 0):
        raise SolverFailed(
            "VPNLS found no fit with positive A and B (the runs may not follow the form)"
        )
    law = ChinchillaLaw(E=values["E"], A=values["A"], B=values["B"], alpha=alpha, beta=beta)
    return ChinchillaFit(
        law,
        "vpnls",
        _objective(law, runs, problem),
        diagnose(law, runs, _on_bound(search, point, values, runs), options.free_parameters),
    )


def _objective(law: ChinchillaLaw, runs: Runs, problem: _Problem) -> float:
    """The objective at the law, from its residuals (more exact than the QR-reduced one)."""
    residual = law.predict(runs.params, runs.tokens) - runs.loss
    factor = np.where(residual > 0, problem.penalty, 1.0)
    return float(np.dot(problem.weights * factor, residual**2))


def _on_bound(
    search: _Search, point: Array, values: dict[str, float], runs: Runs
) -> tuple[str, ...]:
    """Searched exponents at or past the grid's edges, and a fitted E at 0 (to rounding: the
    QR-reduced NNLS leaves ~1e-9 where the bound holds)."""
    low, high = EXPONENT_RANGE
    names: list[str] = []
    for name, value in zip(search.names, point, strict=True):
        if value <= low or value >= high:
            names += name.split("=")
    if "E" not in search.pinned and values["E"] <= E_AT_ZERO * float(np.min(runs.loss)):
        names.append("E")
    return tuple(names)
