"""Fit Muennighoff's data-constrained law (LAWS.md §4.1) to runs that carry unique tokens U.

The published procedure has two stages: the Chinchilla part (E, A, B, alpha, beta) comes from a
fit without repetition, then R_D* and R_N* are fitted with it held fixed, by Huber (delta 1e-3,
summed) on log loss, L-BFGS from a grid of starts. Here the Chinchilla part comes from the
family's own Chinchilla law (`base="law"`), from a fit to the runs that saw each token once
(`base="single_epoch"`), or is refitted together with R_D* and R_N* (`base="joint"`, started
from the single-epoch answer). R* are fitted in log space: they are positive scales.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from planner.errors import Infeasible, InvalidInput, PlannerError, SolverFailed
from planner.fitting.chinchilla import FREE_PARAMETERS as CHINCHILLA_FREE
from planner.fitting.chinchilla import fit_chinchilla
from planner.fitting.data import Array, Runs
from planner.fitting.result import Diagnostics, diagnose_predictions
from planner.laws import ChinchillaLaw
from planner.laws.data_constrained import DataConstrainedLaw, decayed_amount, params_supported

DELTA = 1e-3
BASES = ("law", "single_epoch", "joint")
PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta", "r_d_star", "r_n_star")
# R* beyond these are not identified by any realistic set of runs: a fit ending there says so.
LOG_R_BOUNDS = (np.log(1e-2), np.log(1e4))
R_STARTS = (1.0, 4.0, 16.0, 64.0)
# An R* within this (relative, ~1e-6) of a search bound counts as ending on it.
BOUND_TOLERANCE = 1e-6
EXPONENT_BOUNDS = (1e-3, 5.0)


@dataclass(frozen=True)
class DataConstrainedFit:
    """The fitted law, where its Chinchilla part came from, the Huber objective, diagnostics."""

    law: DataConstrainedLaw
    method: str
    base: str
    objective: float
    diagnostics: Diagnostics


def _huber(residual: Array) -> Array:
    size = np.abs(residual)
    return np.where(size <= DELTA, 0.5 * residual**2, DELTA * (size - 0.5 * DELTA))


def _log_prediction(theta: Array, runs: Runs) -> Array:
    """ln L for theta = (ln A, ln B, ln E, alpha, beta, ln R_D*, ln R_N*), log-sum-exp form."""
    a, b, e, alpha, beta, log_rd, log_rn = theta
    assert runs.unique is not None
    seen = np.minimum(runs.unique, runs.tokens)  # U_D: the unique tokens the run saw
    supported = params_supported(seen, np.exp(a), np.exp(b), alpha, beta)
    n_eff = decayed_amount(runs.params, np.minimum(runs.params, supported), np.exp(log_rn))
    d_eff = decayed_amount(runs.tokens, seen, np.exp(log_rd))
    terms = np.stack([a - alpha * np.log(n_eff), b - beta * np.log(d_eff), np.full_like(n_eff, e)])
    return np.asarray(np.logaddexp.reduce(terms, axis=0))


def _objective(theta: Array, runs: Runs) -> float:
    with np.errstate(all="ignore"):
        value = float(_huber(_log_prediction(theta, runs) - np.log(runs.loss)).sum())
    return value if np.isfinite(value) else float("inf")


def _theta(base: ChinchillaLaw, r_d: float, r_n: float) -> Array:
    return np.array(
        [np.log(base.A), np.log(base.B), np.log(max(base.E, 1e-12)), base.alpha, base.beta,
         np.log(r_d), np.log(r_n)]
    )  # fmt: skip


def _minimise(
    objective: Callable[[Array], float], starts: list[Array], bounds: list[tuple[float, float]]
) -> tuple[Array, float]:
    best: tuple[Array, float] | None = None
    for start in starts:
        result = minimize(
            objective,
            start,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5_000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.fun < best[1]):
            best = (np.asarray(result.x), float(result.fun))
    if best is None or not np.isfinite(best[1]):
        raise SolverFailed("no L-BFGS start reached a finite fit of the data-constrained law")
    return best


def _fit_decay(runs: Runs, base: ChinchillaLaw, start: tuple[float, float] | None) -> Array:
    """(ln R_D*, ln R_N*) with the Chinchilla part fixed; returns the full theta."""
    fixed = _theta(base, 1.0, 1.0)[:5]

    def objective(log_r: Array) -> float:
        return _objective(np.concatenate([fixed, log_r]), runs)

    grid = [np.log(np.array(p)) for p in itertools.product(R_STARTS, R_STARTS)]
    starts = grid if start is None else [np.log(np.array(start))]
    log_r, _ = _minimise(objective, starts, [LOG_R_BOUNDS, LOG_R_BOUNDS])
    return np.concatenate([fixed, log_r])


def _fit_joint(runs: Runs, start: Array) -> Array:
    bounds = [(-50.0, 50.0)] * 3 + [EXPONENT_BOUNDS] * 2 + [LOG_R_BOUNDS] * 2
    theta, _ = _minimise(lambda t: _objective(t, runs), [start], bounds)
    return theta


def fit_chinchilla_part(
    runs: Runs, method: str, start: ChinchillaLaw | None = None
) -> ChinchillaLaw:
    """E, A, B, alpha, beta from the runs where the data-constrained law is plain Chinchilla:
    no repeated tokens (D <= U) and no excess parameters (N <= N_opt(U)). N_opt depends on the
    fit, so the selection and the fit alternate until the selection stops changing."""
    assert runs.unique is not None
    candidates = runs.tokens <= runs.unique * (1 + 1e-9)
    chosen = candidates
    law: ChinchillaLaw | None = None
    for _ in range(8):
        try:
            law = fit_chinchilla(runs.subset(chosen), method, start).law
        except Infeasible as exc:
            if law is not None:
                break  # keep the last selection that could be fitted
            raise Infeasible(
                "the Chinchilla part is fitted to the runs without repeated data or excess "
                f"parameters: {exc.message}",
                field="runs",
            ) from exc
        seen = np.minimum(runs.unique, runs.tokens)
        supported = params_supported(seen, law.A, law.B, law.alpha, law.beta)
        within = candidates & (runs.params <= supported * (1 + 1e-9))
        if np.array_equal(within, chosen):
            break
        chosen = within
    assert law is not None
    return law


def fit_data_constrained(
    runs: Runs,
    base: str = "single_epoch",
    method: str = "vpnls",
    chinchilla: ChinchillaLaw | None = None,
    start: DataConstrainedLaw | None = None,
) -> DataConstrainedFit:
    """Fit R_D* and R_N* (and, with base="joint", the Chinchilla part too).

    base="law" takes the Chinchilla part from `chinchilla`; "single_epoch" fits it by `method`
    to the runs with D <= U. `start` (the full-data fit, for bootstrap resamples) replaces the
    grid of starts.
    """
    if base not in BASES:
        raise InvalidInput("base", f"unknown base {base!r}; known: {list(BASES)}")
    if runs.unique is None:
        raise Infeasible(
            "the data-constrained law needs the unique tokens U of every run", field="runs"
        )
    free = 2 + (CHINCHILLA_FREE if base == "joint" else 0)
    runs.require_fittable(free)
    if np.all(runs.tokens <= runs.unique * (1 + 1e-9)):
        raise Infeasible(
            "no run repeats data (every run has tokens <= unique_tokens), so R_D* and R_N* are "
            "not determined; add runs trained for more than one epoch",
            field="runs",
        )
    if base == "law":
        if chinchilla is None:
            raise Infeasible(
                "base 'law' needs a chinchilla law in the family to take E, A, B, alpha and "
                "beta from; fit or put one first, or use base 'single_epoch'",
                field="base",
            )
        part = chinchilla
    elif base == "joint" and start is not None:
        part = start.as_chinchilla()
    else:
        part = fit_chinchilla_part(runs, method)
    decay_start = None if start is None else (start.r_d_star, start.r_n_star)
    theta = _fit_decay(runs, part, decay_start)
    if base == "joint":
        theta = _fit_joint(runs, theta)
    return _result(runs, theta, base, method)


def _result(runs: Runs, theta: Array, base: str, method: str) -> DataConstrainedFit:
    a, b, e, alpha, beta, log_rd, log_rn = (float(v) for v in theta)
    try:
        law = DataConstrainedLaw(
            E=float(np.exp(e)),
            A=float(np.exp(a)),
            B=float(np.exp(b)),
            alpha=alpha,
            beta=beta,
            r_d_star=float(np.exp(log_rd)),
            r_n_star=float(np.exp(log_rn)),
        )
    except (PlannerError, ValueError) as exc:
        raise SolverFailed(f"the data-constrained fit ended at an invalid law: {exc}") from exc
    on_bound = tuple(
        name
        for name, value in (("r_d_star", log_rd), ("r_n_star", log_rn))
        if min(abs(value - LOG_R_BOUNDS[0]), abs(value - LOG_R_BOUNDS[1])) < BOUND_TOLERANCE
    )
    predicted = law.predict(runs.params, runs.tokens, runs.unique)
    return DataConstrainedFit(
        law=law,
        method=method,
        base=base,
        objective=_objective(theta, runs),
        # R_D* and R_N* are fitted; the Chinchilla part too, to these runs, unless it came
        # from a stored law.
        diagnostics=diagnose_predictions(
            predicted, runs, on_bound, 2 + (0 if base == "law" else CHINCHILLA_FREE)
        ),
    )


def bootstrap_fits(
    runs: Runs,
    indices: Sequence[NDArray[np.intp]],
    base: str,
    method: str,
    chinchilla: ChinchillaLaw | None,
    start: DataConstrainedLaw,
) -> Array:
    """One (E, A, B, alpha, beta, R_D*, R_N*) row per resample: `indices` holds one 1-D array
    of row indices each (any lengths, as chinchilla.bootstrap_fits; a 2-D array is a sequence
    of its rows). NaN where a resample could not be fitted. The single-epoch Chinchilla part is
    refitted on each resample."""
    vectors = np.full((len(indices), len(PARAMETER_NAMES)), np.nan)
    for row, index in enumerate(indices):
        sample = runs.subset(np.asarray(index))
        try:
            if base == "single_epoch":
                part = fit_chinchilla_part(sample, method, start.as_chinchilla())
                law = fit_data_constrained(sample, "law", method, part, start).law
            else:
                law = fit_data_constrained(sample, base, method, chinchilla, start).law
        except PlannerError:
            continue
        vectors[row] = [getattr(law, name) for name in PARAMETER_NAMES]
    return vectors


# Which way each decay constant is pinned by its runs, for the advice in a warning.
_IDENTIFIED_BY = {
    "r_d_star": "runs that repeat their unique data for more epochs",
    "r_n_star": "runs with more parameters than their unique data supports (N > N_opt(U))",
}


def identification_warnings(intervals: dict[str, tuple[float, float]]) -> list[str]:
    """A sentence for each of R_D* and R_N* whose bootstrap 95% interval reaches a search bound
    (LOG_R_BOUNDS): the runs then do not determine it, and any value up to the bound fits as
    well. `intervals`: parameter name -> (low, high), e.g. Ensemble.intervals(PARAMETER_NAMES);
    names absent from it are not judged."""
    bounds = tuple(float(np.exp(b)) for b in LOG_R_BOUNDS)
    warnings = []
    for name, remedy in _IDENTIFIED_BY.items():
        if name not in intervals:
            continue
        low, high = intervals[name]
        reached = [
            bound
            for bound, value in zip(bounds, (low, high), strict=True)
            if abs(np.log(value) - np.log(bound)) <= BOUND_TOLERANCE
        ]
        if reached:
            where = " and ".join(f"{bound:g}" for bound in reached)
            warnings.append(
                f"{name}: the 95% interval ({low:.3g}, {high:.3g}) reaches the search bound "
                f"{where}; these runs do not identify it - add {remedy}"
            )
    return warnings
