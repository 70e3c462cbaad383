"""Hoffmann et al.'s Approach-3 recipe (LAWS.md §1.3), vectorised, with the fit options.

Huber loss (delta 1e-3) on log loss with the log-sum-exp parameterisation
LSE(a - alpha ln N, b - beta ln D, e), minimised by L-BFGS. The recipe starts L-BFGS from each
of 4,500 grid points; here the objective is screened on the grid (numpy, in blocks of bounded
size) and L-BFGS, with the analytic gradient, runs only from the best starts.

Options (planner.fitting.options): only the free parameters are searched, in the log
parameterisation; a fixed one sits in a constant base vector (fixed E = 0 is e = -inf, so the
e term drops out of the LSE). A tied exponent is one coordinate feeding both alpha and beta.
Row weights and the over-estimate penalty multiply each row's Huber loss.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from planner.errors import SolverFailed
from planner.fitting.data import Array, Runs
from planner.fitting.options import DEFAULT_OPTIONS, MAX_EXPONENT, FitOptions
from planner.fitting.result import ChinchillaFit, diagnose, fit_weights
from planner.laws import ChinchillaLaw

DELTA = 1e-3
FREE_PARAMETERS = 5
# Order of the full parameter vector theta = (a, b, e, alpha, beta) = (ln A, ln B, ln E, ...).
THETA_NAMES = ("A", "B", "E", "alpha", "beta")
# Hoffmann's grid: a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, ..., 2}.
GRID_AXES = {
    "A": np.arange(0.0, 30.0, 5.0),
    "B": np.arange(0.0, 30.0, 5.0),
    "E": np.arange(-1.0, 1.5, 0.5),
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
}
START_GRID = np.array(list(itertools.product(*(GRID_AXES[name] for name in THETA_NAMES))))
LOCAL_STARTS = 30
# Screening block: starts x rows evaluated at once. 1 MiB per float64 temporary (a few live)
# keeps memory bounded whatever the row count, and is 3x faster than 8 MiB blocks: the
# temporaries stay in cache between the passes.
BLOCK_ELEMENTS = 1 << 17


def _huber(residual: Array, delta: float) -> Array:
    # clip(r) * (r - clip(r) / 2) is 0.5 r^2 inside [-delta, delta] and delta (|r| - delta/2)
    # outside: the Huber loss in three array passes.
    clipped = np.clip(residual, -delta, delta)
    return np.asarray(clipped * (residual - 0.5 * clipped))


def _row_factors(residual: Array, weights: Array | None, penalty: float) -> Array | float:
    """Each row's multiplier of its Huber loss: its weight, times the penalty when the law
    over-predicts (residual = ln predicted - ln observed > 0).

    As OLMo-core's ChinchillaParametricFit (model_ladder/analysis/scaling_laws.py): there the
    residual is ln observed - ln predicted and rows with a negative one ("overestimates") have
    their Huber loss multiplied by overestimate_penalty, each row's also by its weight (scaled
    to sum to the row count). kyo-takano/chinchilla's asymmetric loss (docs/changes.md) scales
    the same side, y - y_hat < 0, by its lambda.
    """
    factor: Array | float = 1.0 if weights is None else weights
    if penalty != 1.0:
        factor = factor * np.where(residual > 0, penalty, 1.0)
    return factor


def _objective_and_gradient(
    theta: Array,
    log_n: Array,
    log_d: Array,
    log_l: Array,
    delta: float,
    weights: Array | None = None,
    penalty: float = 1.0,
) -> tuple[float, Array]:
    """Summed (weighted, penalised) Huber loss at the full theta and its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    shares = np.exp(terms - top)
    total = shares.sum(axis=0)
    residual = top + np.log(total) - log_l
    shares /= total
    factor = _row_factors(residual, weights, penalty)
    slope = np.clip(residual, -delta, delta) * factor  # Huber's derivative, per row
    gradient = np.array(
        [
            np.dot(slope, shares[0]),
            np.dot(slope, shares[1]),
            np.dot(slope, shares[2]),
            -np.dot(slope * shares[0], log_n),
            -np.dot(slope * shares[1], log_d),
        ]
    )
    return float(np.sum(_huber(residual, delta) * factor)), gradient


@dataclass(frozen=True)
class _Layout:
    """Which coordinates of theta are searched: theta = base + columns @ free."""

    base: Array
    columns: Array  # 5 x free, 0/1 (a tied exponent has two ones)
    names: tuple[str, ...]  # per free coordinate; "alpha=beta" for a tied exponent

    @classmethod
    def of(cls, options: FitOptions) -> _Layout:
        pinned = options.pinned
        base = np.zeros(len(THETA_NAMES))
        for k, name in enumerate(THETA_NAMES):
            if name in pinned:
                base[k] = _to_theta(name, pinned[name])
        groups = [[name] for name in ("A", "B", "E") if name not in pinned]
        if options.shares_exponent:
            groups.append(["alpha", "beta"])
        else:
            groups += [[name] for name in ("alpha", "beta") if name not in pinned]
        columns = np.zeros((len(THETA_NAMES), len(groups)))
        for j, group in enumerate(groups):
            for name in group:
                columns[THETA_NAMES.index(name), j] = 1.0
        return cls(base, columns, tuple("=".join(group) for group in groups))

    def full(self, free: Array) -> Array:
        return np.asarray(self.base + self.columns @ free)

    def project(self, theta: Array) -> Array:
        """The free coordinates nearest to a full theta (a tied exponent: the mean of both)."""
        return np.asarray((self.columns.T @ theta) / self.columns.sum(axis=0))

    def start_grid(self) -> Array:
        """Hoffmann's grid on the free coordinates only."""
        axes = [GRID_AXES[name.split("=")[0]] for name in self.names]
        return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, len(axes))


def _to_theta(name: str, value: float) -> float:
    if name in ("alpha", "beta"):
        return value
    return math.log(value) if value > 0 else -math.inf  # E = 0: no e term


def _grid_objective(
    starts: Array,
    log_n: Array,
    log_d: Array,
    log_l: Array,
    delta: float,
    weights: Array | None = None,
    penalty: float = 1.0,
) -> Array:
    """The objective of each full theta in `starts` on these rows, all at once (one block)."""
    a, b, e, alpha, beta = (starts[:, k : k + 1] for k in range(5))
    # exp-space sum, then one log: about half the time of two logaddexp passes. Starts are grid
    # points or fixed values; an overflow gives an infinite objective, never picked.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        total = np.exp(a - alpha * log_n)
        total += np.exp(b - beta * log_d)
        total += np.exp(e)
        residual = np.log(total, out=total)
        residual -= log_l
        loss = _huber(residual, delta)
        if penalty != 1.0:
            np.multiply(loss, penalty, out=loss, where=residual > 0)
        summed = loss @ (np.ones_like(log_l) if weights is None else weights)
    return np.where(np.isnan(summed), np.inf, summed)


def screen(
    starts: Array,
    log_n: Array,
    log_d: Array,
    log_l: Array,
    delta: float,
    weights: Array | None = None,
    penalty: float = 1.0,
) -> Array:
    """`_grid_objective` of every start, in blocks of at most BLOCK_ELEMENTS starts x rows so
    that memory stays bounded whatever the row count."""
    rows = log_n.size
    row_block = min(rows, BLOCK_ELEMENTS)
    start_block = max(1, BLOCK_ELEMENTS // row_block)
    totals = np.zeros(len(starts))
    for r in range(0, rows, row_block):
        part = slice(r, r + row_block)
        block_weights = None if weights is None else weights[part]
        for s in range(0, len(starts), start_block):
            totals[s : s + start_block] += _grid_objective(
                starts[s : s + start_block],
                log_n[part],
                log_d[part],
                log_l[part],
                delta,
                block_weights,
                penalty,
            )
    return totals


@dataclass(frozen=True)
class _Problem:
    """The runs (logs), the loss's shape and the layout of the free coordinates."""

    log_n: Array
    log_d: Array
    log_l: Array
    delta: float
    weights: Array | None
    penalty: float
    layout: _Layout

    def objective(self, free: Array) -> tuple[float, Array]:
        value, gradient = _objective_and_gradient(
            self.layout.full(free),
            self.log_n,
            self.log_d,
            self.log_l,
            self.delta,
            self.weights,
            self.penalty,
        )
        return value, self.layout.columns.T @ gradient

    def screened_starts(self, count: int) -> list[Array]:
        grid = self.layout.start_grid()
        full = self.layout.base + grid @ self.layout.columns.T
        scores = screen(
            full, self.log_n, self.log_d, self.log_l, self.delta, self.weights, self.penalty
        )
        return [grid[i] for i in np.argsort(scores, kind="stable")[:count]]

    def refine(self, starts: list[Array]) -> Array | None:
        """L-BFGS from each start; the free coordinates of the best finite end point."""
        best_x, best_fun = None, math.inf
        for point in starts:
            result = minimize(
                self.objective,
                point,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
            )
            if np.all(np.isfinite(result.x)) and np.isfinite(result.fun) and result.fun < best_fun:
                best_x, best_fun = result.x, float(result.fun)
        return best_x


def _theta_of(law: ChinchillaLaw) -> Array:
    e = math.log(max(law.E, 1e-12))  # a start at E = 0 begins just above it
    return np.array([math.log(law.A), math.log(law.B), e, law.alpha, law.beta])


def fit_huber(
    runs: Runs,
    delta: float = DELTA,
    local_starts: int = LOCAL_STARTS,
    start: ChinchillaLaw | None = None,
    options: FitOptions = DEFAULT_OPTIONS,
) -> ChinchillaFit:
    """Fit by Huber-on-log-loss multistart L-BFGS; the objective is the summed Huber loss,
    each row's multiplied by its weight (scaled to mean 1) and, when the law over-predicts it,
    by options.overestimate_penalty.

    With `start` (e.g. the full-data fit, for bootstrap resamples) L-BFGS starts from it, plus
    the grid's `local_starts` best; local_starts = 0 skips the grid unless the start fails.
    """
    options = options.validated()
    runs.require_fittable(options.free_parameters)
    layout = _Layout.of(options)
    problem = _Problem(
        np.log(runs.params),
        np.log(runs.tokens),
        np.log(runs.loss),
        delta,
        None if runs.weights is None else fit_weights(runs),
        options.overestimate_penalty,
        layout,
    )
    starts = [] if start is None else [layout.project(_theta_of(start))]
    if start is None or local_starts > 0:
        starts += problem.screened_starts(local_starts)
    best = problem.refine(starts)
    if start is not None and (best is None or not _plausible(layout.full(best))):
        # The resample moved away from the start's basin: search it like a first fit.
        best = problem.refine(problem.screened_starts(max(local_starts, LOCAL_STARTS)))
    if best is None:
        raise SolverFailed("no L-BFGS start converged to a finite fit")
    law = _law(layout.full(best), options.pinned)
    value, _ = problem.objective(best)
    return ChinchillaFit(
        law, "huber", value, diagnose(law, runs, free_parameters=options.free_parameters)
    )


def _plausible(theta: Array) -> bool:
    return bool(0 < theta[3] <= MAX_EXPONENT and 0 < theta[4] <= MAX_EXPONENT)


def _law(theta: Array, pinned: dict[str, float]) -> ChinchillaLaw:
    """The law at theta; fixed parameters exactly as given (not exp(ln value))."""
    a, b, e, alpha, beta = (float(v) for v in theta)
    if not _plausible(theta):
        raise SolverFailed(
            f"the Huber fit ended at exponents alpha = {alpha:.4g}, beta = {beta:.4g}, outside "
            f"(0, {MAX_EXPONENT:g}]: the runs do not determine the law"
        )
    values = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}
    try:
        return ChinchillaLaw(**(values | pinned))
    except (ValueError, OverflowError) as exc:
        raise SolverFailed(f"the Huber fit ended at an invalid law: {exc}") from exc
