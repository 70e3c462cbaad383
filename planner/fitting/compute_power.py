"""Fit the compute_power law L(C) = L_inf + A·(C + C0)^-alpha to (compute, loss) points.

As the Chinchilla fits: Huber loss (delta 1e-3) on log loss, from a few starts, here by
trust-region least squares in the parameters (ln L_inf, ln A', alpha, ln C0') with compute
rescaled by its geometric mean s (A = A' s^alpha, C0 = C0' s), so every coordinate is O(1).
The offset C0 is kept only when it lowers the objective clearly: on data far above any offset
it is not identified, and the plain power law (C0 = 0) is the honest answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from planner.errors import Infeasible, InvalidInput, SolverFailed
from planner.fitting.result import Diagnostics
from planner.laws.compute_power import COLUMNS, DEFAULT_FLOPS_PER_PARAM_TOKEN, ComputePowerLaw

Array = NDArray[np.float64]
DELTA = 1e-3
MAX_ALPHA = 5.0
# The offset must cut the objective by this share to be kept (parsimony, module docstring).
OFFSET_GAIN = 0.1
# Starts: floors as shares of the lowest loss, exponents.
FLOOR_STARTS = (0.5, 0.8, 0.95)
ALPHA_STARTS = (0.05, 0.2, 0.5)


@dataclass(frozen=True)
class ComputePowerFit:
    law: ComputePowerLaw
    objective: float
    diagnostics: Diagnostics
    offset: bool  # whether C0 was fitted (else fixed at 0)


def _check(compute: Array, loss: Array, weights: Array | None) -> None:
    if compute.shape != loss.shape or compute.ndim != 1:
        raise InvalidInput("runs", "compute and loss need one value per run")
    if not (np.all(np.isfinite(compute)) and np.all(compute > 0)):
        raise InvalidInput("runs", "every run's compute must be finite and > 0")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise InvalidInput("runs", "every loss must be finite and > 0")
    if weights is not None and weights.shape != loss.shape:
        raise InvalidInput("runs", "weights need one value per run")


def _predict(theta: Array, x: Array) -> Array:
    """Loss at rescaled compute x = C / s; theta = (ln L_inf, ln A', alpha[, ln C0'])."""
    log_floor, log_a, alpha = theta[:3]
    offset = np.exp(theta[3]) if theta.size > 3 else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(np.exp(log_floor) + np.exp(log_a - alpha * np.log(x + offset)))


def _residuals(theta: Array, x: Array, log_loss: Array, root_weights: Array) -> Array:
    predicted = _predict(theta, x)
    return np.asarray(root_weights * (np.log(np.maximum(predicted, 1e-300)) - log_loss))


def _solve(theta: Array, x: Array, log_loss: Array, root_weights: Array) -> tuple[Array, float]:
    low = [-50.0, -50.0, 1e-4] + ([np.log(x.min()) - 30.0] if theta.size > 3 else [])
    high = [10.0, 50.0, MAX_ALPHA] + ([np.log(x.max()) + 5.0] if theta.size > 3 else [])
    start = np.clip(theta, np.array(low) + 1e-9, np.array(high) - 1e-9)
    result = least_squares(
        _residuals,
        start,
        bounds=(low, high),
        args=(x, log_loss, root_weights),
        loss="huber",
        f_scale=DELTA,
        x_scale="jac",
        max_nfev=2000,
    )
    # least_squares' cost with loss="huber" is 0.5 * sum(rho): the Huber objective.
    return np.asarray(result.x), float(result.cost)


def _starts(x: Array, loss: Array, offset: bool) -> list[Array]:
    smallest = int(np.argmin(x))
    starts = []
    for share in FLOOR_STARTS:
        floor = share * float(loss.min())
        for alpha in ALPHA_STARTS:
            excess = max(float(loss[smallest]) - floor, 1e-6)
            theta = [np.log(floor), np.log(excess) + alpha * np.log(x[smallest]), alpha]
            if offset:
                theta.append(np.log(x.min()))
            starts.append(np.array(theta))
    return starts


def _best(
    starts: Sequence[Array], x: Array, log_loss: Array, root_weights: Array
) -> tuple[Array, float] | None:
    best: tuple[Array, float] | None = None
    for start in starts:
        try:
            theta, cost = _solve(start, x, log_loss, root_weights)
        except ValueError:
            continue  # a start where the residuals overflow
        if np.isfinite(cost) and (best is None or cost < best[1]):
            best = (theta, cost)
    return best


def _law(theta: Array, scale: float, k: float) -> ComputePowerLaw:
    log_floor, log_a, alpha = (float(v) for v in theta[:3])
    offset = float(np.exp(theta[3]) * scale) if theta.size > 3 else 0.0
    return ComputePowerLaw(
        L_inf=float(np.exp(log_floor)),
        A=float(np.exp(log_a + alpha * np.log(scale))),
        alpha=alpha,
        C0=offset,
        k=k,
    )


def _diagnostics(law: ComputePowerLaw, compute: Array, loss: Array, free: int) -> Diagnostics:
    residuals = np.log(law.predict_compute(compute)) - np.log(loss)
    dof = loss.size - free
    return Diagnostics(
        rmse_log_loss=float(np.sqrt(np.mean(residuals**2))),
        max_abs_log_loss=float(np.max(np.abs(residuals))),
        runs=int(loss.size),
        on_bound=(),
        residual_sd_log_loss=float(np.sqrt(np.sum(residuals**2) / dof)) if dof > 0 else np.nan,
    )


def fit_compute_power(
    compute: ArrayLike,
    loss: ArrayLike,
    weights: ArrayLike | None = None,
    k: float = DEFAULT_FLOPS_PER_PARAM_TOKEN,
) -> ComputePowerFit:
    """The law fitted to losses at their training compute; `k` records how C = k N D was
    computed (stored with the law for Predict)."""
    c, y = np.asarray(compute, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    _check(c, y, w)
    if np.unique(c).size < 4:
        raise Infeasible(
            f"{np.unique(c).size} distinct computes cannot determine a saturating power law; "
            "give at least 4",
            field="runs",
        )
    scale = float(np.exp(np.mean(np.log(c))))
    x, log_loss = c / scale, np.log(y)
    root_weights = np.ones_like(y) if w is None else np.sqrt(w * (w.size / w.sum()))
    plain = _best(_starts(x, y, False), x, log_loss, root_weights)
    if plain is None:
        raise SolverFailed("no start of the compute_power fit converged")
    theta, cost = plain
    offset = False
    if np.unique(c).size >= 5:  # four parameters need a fifth point to be tested
        shifted = _best(_starts(x, y, True), x, log_loss, root_weights)
        if shifted is not None and shifted[1] < (1 - OFFSET_GAIN) * cost - 1e-15:
            theta, cost, offset = shifted[0], shifted[1], True
    law = _law(theta, scale, k)
    return ComputePowerFit(law, cost, _diagnostics(law, c, y, 4 if offset else 3), offset)


def bootstrap_compute_power(
    compute: ArrayLike,
    loss: ArrayLike,
    samples: Sequence[NDArray[np.intp]],
    start: ComputePowerLaw,
    weights: ArrayLike | None = None,
) -> Array:
    """One row (COLUMNS order) per resample of point indices, refined from `start` (the fit on
    all points), C0 fitted only if the start has one; NaN rows where a resample failed."""
    c, y = np.asarray(compute, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    _check(c, y, w)
    scale = float(np.exp(np.mean(np.log(c))))
    theta = [np.log(start.L_inf), np.log(start.A) - start.alpha * np.log(scale), start.alpha]
    if start.C0 > 0:
        theta.append(np.log(start.C0 / scale))
    rows = np.full((len(samples), len(COLUMNS)), np.nan)
    for row, entry in enumerate(samples):
        index = np.asarray(entry)
        if np.unique(c[index]).size < len(theta) + 1:
            continue  # too few distinct computes drawn to pin the curve down
        ws = np.ones(index.size) if w is None else w[index]
        root_weights = np.sqrt(ws * (ws.size / ws.sum()))
        try:
            fitted, _ = _solve(np.array(theta), c[index] / scale, np.log(y[index]), root_weights)
        except ValueError:
            continue
        rows[row] = _law(fitted, scale, start.k).row()
    return rows
