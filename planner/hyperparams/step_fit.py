"""Refit the Step Law from a grid of training runs, as Li et al. 2025 do, with a cell bootstrap.

Each (N, D) cell of the grid holds runs over learning rates and batch sizes. Its optimum is the
run of lowest (smoothed) final loss; log lr* is regressed on log N and log D and log batch* on
log D by least squares. Intervals come from resampling cells with replacement.

Cell filter: an optimum is kept only if it is bracketed on the grid, i.e. among the cell's runs
at the optimum's batch size there is a smaller and a larger learning rate, and among its runs at
the optimum's learning rate a smaller and a larger batch. An optimum on the edge of what was
tried is only a bound (the true optimum may lie beyond), and a least-squares fit through it
would be biased toward the grid. In the authors' released dense grid this drops one of 17 cells
(1.07e9 params, 5.69e10 tokens: its runs stop at lr 1.381e-3 at the best batch, and that is
where its loss is lowest).

The authors' own script (step-law/steplaw code/fit_tool.py) differs: it keeps every run within
0.25% of its cell's best smoothed loss and bootstraps those runs, not cells. Resampling cells
here is deliberate: runs of one cell are not independent evidence about the law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import Infeasible, InvalidInput
from planner.hyperparams.step_law import StepLaw

Array = NDArray[np.float64]

# Grid values printed at different precisions (3.906e-3 vs 3.91e-3) name the same setting; grid
# steps are at least a factor sqrt(2) apart, so 1% cannot merge two settings.
SAME_SETTING_RTOL = 1e-2
# Three coefficients for lr plus one degree of freedom.
MIN_CELLS = 4
# Coefficient order in bootstrap samples: (ln a, alpha, beta, ln b, gamma).
COEFFICIENTS = ("ln_lr_coefficient", "alpha", "beta", "ln_batch_coefficient", "gamma")
# A resample whose log N and log D are collinear (|corr| this close to 1) cannot separate the
# two exponents; it is dropped and counted rather than given an arbitrary answer.
COLLINEAR = 1e-9


@dataclass(frozen=True)
class CellOptima:
    """The located optimum of each kept (N, D) cell, and the cells dropped with the reason."""

    params: Array
    tokens: Array
    learning_rate: Array
    batch_tokens: Array
    loss: Array
    dropped: tuple[tuple[float, float, str], ...]

    @property
    def cells(self) -> int:
        return int(self.params.size)


def _column(name: str, values: ArrayLike) -> Array:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"runs.{name}", "must all be finite numbers")
    if np.any(array <= 0):
        raise InvalidInput(f"runs.{name}", "must all be > 0")
    return array


def _bracketed(values: Array, best: float) -> bool:
    return bool(np.any(values < best * (1 - SAME_SETTING_RTOL))) and bool(
        np.any(values > best * (1 + SAME_SETTING_RTOL))
    )


def cell_optima(
    params: ArrayLike,
    tokens: ArrayLike,
    learning_rate: ArrayLike,
    batch_tokens: ArrayLike,
    loss: ArrayLike,
) -> CellOptima:
    """The lowest-loss run of each (params, tokens) cell whose optimum the grid brackets."""
    columns = {
        "params": _column("params", params),
        "tokens": _column("tokens", tokens),
        "learning_rate": _column("learning_rate", learning_rate),
        "batch_tokens": _column("batch_tokens", batch_tokens),
        "loss": _column("loss", loss),
    }
    if len({c.size for c in columns.values()}) != 1:
        raise InvalidInput("runs", f"{', '.join(columns)} must have the same length")
    n, d, lr, batch, final = columns.values()
    cells, which = np.unique(np.column_stack([n, d]), axis=0, return_inverse=True)
    which = which.ravel()
    kept: list[int] = []
    dropped: list[tuple[float, float, str]] = []
    for cell in range(cells.shape[0]):
        rows = np.flatnonzero(which == cell)
        best = rows[np.argmin(final[rows])]
        same_batch = rows[np.isclose(batch[rows], batch[best], rtol=SAME_SETTING_RTOL)]
        same_lr = rows[np.isclose(lr[rows], lr[best], rtol=SAME_SETTING_RTOL)]
        if not _bracketed(lr[same_batch], lr[best]):
            dropped.append((float(n[best]), float(d[best]), "learning rate on the grid edge"))
        elif not _bracketed(batch[same_lr], batch[best]):
            dropped.append((float(n[best]), float(d[best]), "batch size on the grid edge"))
        else:
            kept.append(int(best))
    index = np.asarray(kept, dtype=np.intp)
    return CellOptima(
        params=n[index],
        tokens=d[index],
        learning_rate=lr[index],
        batch_tokens=batch[index],
        loss=final[index],
        dropped=tuple(dropped),
    )


def _regress(log_n: Array, log_d: Array, log_lr: Array, log_batch: Array) -> tuple[Array, Array]:
    """Least squares over the last axis (any leading batch axes): returns the coefficients
    (..., 5) in COEFFICIENTS order and a mask of resamples that determine them."""
    # Centred sums: the 2x2 normal equations of the slopes, well conditioned whatever the scale.
    xn = log_n - log_n.mean(axis=-1, keepdims=True)
    xd = log_d - log_d.mean(axis=-1, keepdims=True)
    y_lr = log_lr - log_lr.mean(axis=-1, keepdims=True)
    y_b = log_batch - log_batch.mean(axis=-1, keepdims=True)
    snn = (xn * xn).sum(axis=-1)
    sdd = (xd * xd).sum(axis=-1)
    snd = (xn * xd).sum(axis=-1)
    det = snn * sdd - snd * snd
    ok = det > COLLINEAR * snn * sdd
    safe_det = np.where(ok, det, 1.0)
    safe_sdd = np.where(sdd > 0, sdd, 1.0)
    sny = (xn * y_lr).sum(axis=-1)
    sdy = (xd * y_lr).sum(axis=-1)
    alpha = (sdd * sny - snd * sdy) / safe_det
    beta = (snn * sdy - snd * sny) / safe_det
    gamma = (xd * y_b).sum(axis=-1) / safe_sdd
    ln_a = log_lr.mean(axis=-1) - alpha * log_n.mean(axis=-1) - beta * log_d.mean(axis=-1)
    ln_b = log_batch.mean(axis=-1) - gamma * log_d.mean(axis=-1)
    return np.stack([ln_a, alpha, beta, ln_b, gamma], axis=-1), ok


def _law(coefficients: Array) -> StepLaw:
    ln_a, alpha, beta, ln_b, gamma = (float(c) for c in coefficients)
    return StepLaw(math.exp(ln_a), alpha, beta, math.exp(ln_b), gamma)


def _logs(optima: CellOptima) -> tuple[Array, Array, Array, Array]:
    if optima.cells < MIN_CELLS:
        raise Infeasible(
            f"{optima.cells} cells with a located optimum; the Step Law needs at least {MIN_CELLS}"
        )
    return (
        np.log(optima.params),
        np.log(optima.tokens),
        np.log(optima.learning_rate),
        np.log(optima.batch_tokens),
    )


def fit_step_law(optima: CellOptima) -> StepLaw:
    """Least-squares Step Law through the cell optima (log-linear in N and D)."""
    coefficients, ok = _regress(*_logs(optima))
    if not bool(ok):
        raise Infeasible(
            "the cells' log N and log D are collinear: the exponents are not identified"
        )
    return _law(coefficients)


@dataclass(frozen=True)
class StepLawBootstrap:
    """A cell bootstrap of the Step Law fit.

    point: the fit on all cells. mean: the law of the mean log-coefficients over resamples (the
    authors report this). samples: (resamples kept, 5) in COEFFICIENTS order. collinear: how many
    resamples were dropped because they could not separate the exponents."""

    point: StepLaw
    mean: StepLaw
    samples: Array
    collinear: int

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of one coefficient (a name of COEFFICIENTS)."""
        if name not in COEFFICIENTS:
            raise InvalidInput("name", f"unknown coefficient; expected one of {COEFFICIENTS}")
        return _percentiles(self.samples[:, COEFFICIENTS.index(name)], level)

    def spread(self, name: str) -> float:
        """Bootstrap standard deviation of one coefficient."""
        if name not in COEFFICIENTS:
            raise InvalidInput("name", f"unknown coefficient; expected one of {COEFFICIENTS}")
        return float(np.std(self.samples[:, COEFFICIENTS.index(name)], ddof=1))

    def learning_rate_interval(
        self, params: float, tokens: float, level: float = 0.95
    ) -> tuple[float, float]:
        """Percentile interval of lr*(N, D) over the resamples (the coefficients co-vary, so
        this is much tighter than the coefficients' intervals suggest near the data)."""
        self.point.learning_rate(params, tokens)  # validates the inputs
        s = self.samples
        log_lr = s[:, 0] + s[:, 1] * math.log(params) + s[:, 2] * math.log(tokens)
        low, high = _percentiles(log_lr, level)
        return math.exp(low), math.exp(high)

    def batch_interval(self, tokens: float, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of batch*(D), in tokens, over the resamples."""
        self.point.batch_tokens(tokens)
        s = self.samples
        low, high = _percentiles(s[:, 3] + s[:, 4] * math.log(tokens), level)
        return math.exp(low), math.exp(high)


def _percentiles(values: Array, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise InvalidInput("level", "must be in (0, 1)")
    tail = 50 * (1 - level)
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_step_law(
    optima: CellOptima, resamples: int = 1000, seed: int = 0
) -> StepLawBootstrap:
    """Resample cells with replacement `resamples` times (numpy Generator seeded by `seed`) and
    refit each resample, all at once."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 2:
        raise InvalidInput("resamples", "must be an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput("seed", "must be a non-negative integer")
    logs = _logs(optima)
    point, ok = _regress(*logs)
    if not bool(ok):
        raise Infeasible(
            "the cells' log N and log D are collinear: the exponents are not identified"
        )
    rng = np.random.default_rng(seed)
    index = rng.integers(0, optima.cells, size=(resamples, optima.cells))
    samples, determined = _regress(*(column[index] for column in logs))
    kept = samples[determined]
    if kept.shape[0] < 2:
        raise Infeasible("too few resamples separate log N from log D")
    return StepLawBootstrap(
        point=_law(point),
        mean=_law(kept.mean(axis=0)),
        samples=kept,
        collinear=int(resamples - kept.shape[0]),
    )
