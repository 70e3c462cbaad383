"""Fit a broken power law (LAWS.md §7) to one-variable data, with 0-3 breaks chosen by error
on the largest-x points held out (the extrapolation the law will be used for).

Residuals are ln(y + 1) - ln(y_hat + 1), as in the authors' code; each break count is fitted by
trust-region least squares from several starts (breaks spread over the data's range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from planner.errors import Infeasible, InvalidInput, PlannerError, SolverFailed
from planner.fitting.result import Diagnostics
from planner.laws.bnsl import MAX_BREAKS, Break, BrokenPowerLaw
from planner.laws.bnsl_forms import VARIABLES, BnslLaw, bnsl_law, columns, row_of

Array = NDArray[np.float64]
HOLDOUT = 0.2
PARSIMONY = 1.1
STARTS = 6


def _law(theta: Array, breaks: int) -> BrokenPowerLaw:
    a, log_b, c0 = theta[:3]
    rows = theta[3:].reshape(breaks, 3) if breaks else np.empty((0, 3))
    return BrokenPowerLaw(
        a=float(a),
        b=float(np.exp(log_b)),
        c0=float(c0),
        breaks=tuple(Break(float(c), float(np.exp(ld)), float(np.exp(lf))) for c, ld, lf in rows),
    )


def _residuals(theta: Array, log_x: Array, target: Array, breaks: int) -> Array:
    a, log_b, c0 = theta[:3]
    log_term = log_b - c0 * log_x
    for c, log_d, log_f in theta[3:].reshape(breaks, 3) if breaks else ():
        f = np.exp(log_f)
        log_term = log_term - c * f * np.logaddexp(0.0, (log_x - log_d) / f)
    with np.errstate(over="ignore", invalid="ignore"):
        prediction = a + np.exp(np.minimum(log_term, 700.0))
    return np.asarray(np.log(np.maximum(prediction + 1.0, 1e-12)) - target)


def _check(x: Array, y: Array) -> None:
    if x.size != y.size or x.size == 0:
        raise InvalidInput("points", "x and y must be non-empty and of the same length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InvalidInput("points", "x and y must be finite")
    if np.any(x <= 0) or np.any(y <= -1):
        raise InvalidInput("points", "x must be > 0 and y > -1")


def fit_bnsl(x: ArrayLike, y: ArrayLike, breaks: int, seed: int = 0) -> BrokenPowerLaw:
    """Least-squares fit with exactly `breaks` breaks."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check(xs, ys)
    if not 0 <= breaks <= MAX_BREAKS:
        raise InvalidInput("breaks", f"must be 0 to {MAX_BREAKS}, got {breaks}")
    size = 3 + 3 * breaks
    if xs.size <= size:
        raise Infeasible(f"{xs.size} points cannot determine {size} parameters", field="points")
    order = np.argsort(xs)
    log_x, target = np.log(xs[order]), np.log(ys[order] + 1.0)
    slope = -np.polyfit(log_x, np.log(np.maximum(ys[order] - ys.min() * 0.5, 1e-12)), 1)[0]
    rng = np.random.default_rng(seed)
    best = None
    for start in range(STARTS):
        locations = np.quantile(log_x, (np.arange(breaks) + 1) / (breaks + 1))
        theta = [ys.min() * 0.5, np.log(max(ys[order][0], 1e-12)) + slope * log_x[0], slope]
        for location in locations:
            jitter = 0.0 if start == 0 else rng.normal(scale=0.15 * np.ptp(log_x))
            theta += [rng.normal(scale=0.3) if start else 0.0, location + jitter, 0.0]
        try:
            result = least_squares(
                _residuals,
                np.array(theta),
                args=(log_x, target, breaks),
                method="trf",
                x_scale="jac",
                max_nfev=1500,
            )
        except ValueError:
            continue
        if np.isfinite(result.cost) and (best is None or result.cost < best.cost):
            best = result
    if best is None:
        raise SolverFailed("no start of the broken-power-law fit converged")
    law = _law(best.x, breaks)
    return BrokenPowerLaw(law.a, law.b, law.c0, law.breaks, fitted_up_to=float(xs.max()))


@dataclass(frozen=True)
class BnslChoice:
    law: BrokenPowerLaw
    breaks: int
    held_out_error: dict[int, float]  # mean squared log error on the held-out points, by breaks


def fit_bnsl_auto(
    x: ArrayLike, y: ArrayLike, max_breaks: int = MAX_BREAKS, seed: int = 0
) -> BnslChoice:
    """Choose the number of breaks by error on the largest 20% of x, then refit on all points."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check(xs, ys)
    order = np.argsort(xs)
    held = max(2, round(HOLDOUT * xs.size))
    train, test = order[:-held], order[-held:]
    errors: dict[int, float] = {}
    for breaks in range(max_breaks + 1):
        if train.size <= 3 + 3 * breaks:
            break
        law = fit_bnsl(xs[train], ys[train], breaks, seed)
        predicted = law.predict(xs[test])
        errors[breaks] = float(
            np.mean((np.log(np.maximum(predicted + 1, 1e-12)) - np.log(ys[test] + 1)) ** 2)
        )
    if not errors:
        raise Infeasible(f"{xs.size} points are too few to fit even a plain power law")
    # Parsimony: the fewest breaks whose held-out error is within 10% of the best (an extra
    # break that fits the held-out points no better is noise, not structure).
    best = min(errors.values())
    chosen = min(n for n, error in errors.items() if error <= best * PARSIMONY + 1e-12)
    return BnslChoice(fit_bnsl(xs, ys, chosen, seed), chosen, errors)


# -- stored forms (bnsl_compute, bnsl_params, bnsl_tokens) and their bootstrap -----------------


@dataclass(frozen=True)
class BnslFormFit:
    """A BNSL fitted for storage: the stored law, how its break count was chosen (held-out
    errors are empty when the caller fixed the count) and residuals on log y."""

    law: BnslLaw
    choice: BnslChoice
    diagnostics: Diagnostics


def fit_bnsl_form(
    x: ArrayLike,
    y: ArrayLike,
    variable: str,
    breaks: int | None = None,
    seed: int = 0,
    k: float | None = None,
) -> BnslFormFit:
    """Fit y against x (compute = k N D, params or tokens) and return the law as the stored form
    bnsl_<variable>. `breaks` None chooses 0-3 breaks by held-out error (fit_bnsl_auto);
    `k` (bnsl_compute only, default 6) records how x was computed."""
    if variable not in VARIABLES:
        raise InvalidInput("variable", f"must be one of {list(VARIABLES)}, got {variable!r}")
    if breaks is None:
        choice = fit_bnsl_auto(x, y, MAX_BREAKS, seed)
    else:
        choice = BnslChoice(fit_bnsl(x, y, breaks, seed), breaks, {})
    law = bnsl_law(variable, choice.law, k)
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    free = 3 + 3 * len(choice.law.breaks)
    return BnslFormFit(law, choice, _diagnostics(law.predict_x(xs), ys, free))


def _diagnostics(predicted: Array, observed: Array, free_parameters: int) -> Diagnostics:
    """Residuals ln(y_hat) - ln(y), as for every other law, and their SD per degree of freedom;
    NaN when some y or y_hat <= 0 (an error-rate curve may go there, and a log residual then
    means nothing)."""
    if np.any(predicted <= 0) or np.any(observed <= 0):
        return Diagnostics(float("nan"), float("nan"), int(observed.size), ())
    residuals = np.log(predicted) - np.log(observed)
    return Diagnostics(
        rmse_log_loss=float(np.sqrt(np.mean(residuals**2))),
        max_abs_log_loss=float(np.max(np.abs(residuals))),
        runs=int(observed.size),
        on_bound=(),
        residual_sd_log_loss=float(
            np.sqrt(np.sum(residuals**2) / max(observed.size - free_parameters, 1))
        ),
    )


def bootstrap_bnsl(
    x: ArrayLike, y: ArrayLike, breaks: int, indices: Sequence[NDArray[np.intp]], seed: int = 0
) -> Array:
    """One parameter row per resample (each entry of `indices` an array of point indices; a
    2-D array is a sequence of its rows), with `breaks` fixed for the whole ensemble so the
    columns mean the same thing in every row. Columns are
    bnsl_forms.columns(breaks): a, b, c0, then c_i, d_i, f_i with breaks sorted by location
    (bnsl_forms.row_of). NaN rows where a resample could not be fitted, e.g. it drew too few
    distinct x."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check(xs, ys)
    if not 0 <= breaks <= MAX_BREAKS:
        raise InvalidInput("breaks", f"must be 0 to {MAX_BREAKS}, got {breaks}")
    names = columns(breaks)
    rows = np.full((len(indices), len(names)), np.nan)
    for row, entry in enumerate(indices):
        index = np.asarray(entry)
        if np.unique(xs[index]).size <= len(names):
            continue  # repeated points add no information on the curve's shape
        try:
            rows[row] = row_of(fit_bnsl(xs[index], ys[index], breaks, seed))
        except PlannerError:
            continue
    return rows
