"""Many compute-optimal plans, or many predicted losses, from one law at once (numpy arrays).

The closed form answers every row no cap binds in a few array operations, with the formulas
of closed_form and compute_optimal applied elementwise. Rows it leaves (a cap binds or nearly
binds, a target at or below E or beyond 1e300 FLOPs, numbers near the edge of float range)
go to the single-plan path (compute_optimal.try_closed_form, then the GP), which decides each
exactly as PlanComputeOptimal does. Elementwise and scalar powers can differ in the last bit,
so rows within EDGE of a threshold take the single-plan path rather than risk another answer.

Loss bands are the 2.5 and 97.5 percentiles over the ensemble rows, as uncertainty's
BAND_OF_LAW, computed for a block of points at a time (a points x rows matrix of bounded size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from planner.laws import BnslComputeLaw, ComputePowerLaw, DataConstrainedLaw, Law
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.compute_optimal import CLOSED_FORM, Caps, ComputeOptimalPlan
from planner.uncertainty import HIGH, LOW, MIN_ROWS, row_losses

Array = NDArray[np.float64]
Mask = NDArray[np.bool_]
Q = TypeVar("Q")
P = TypeVar("P")

# Relative distance from a threshold (a cap, the 1e300-FLOPs limit of a target) within which
# a row is left to the single-plan path.
EDGE = 1e-9
# Plans with a number outside this range are left to the single-plan path (its range checks).
SMALLEST, LARGEST = 1e-300, 1e300
# least_compute_for_loss refuses targets needing more than 1e300 FLOPs.
LOG_MAX_COMPUTE = math.log(1e300)
# Points x ensemble rows evaluated at once for bands (8 bytes each, a few temporaries).
BAND_CELLS = 1_000_000


@dataclass(frozen=True)
class ClosedFormRows:
    """Closed-form plans for every row; `answered` marks the rows they hold for (the others
    need compute_optimal's single-plan path). `binding`: "compute" or "target_loss"."""

    params: Array
    tokens: Array
    loss: Array
    flops: Array
    answered: Mask
    binding: str


def budget_rows(law: ChinchillaLaw, budgets: Array, caps: Caps, k: float) -> ClosedFormRows:
    """Least loss on each budget line k N D = C (closed_form.optimal_allocation per row)."""
    answerable = np.ones(budgets.shape, dtype=bool)
    return _rows(law, budgets, caps, k, answerable, "compute")


def target_rows(law: ChinchillaLaw, targets: Array, caps: Caps, k: float) -> ClosedFormRows:
    """Least compute reaching each loss target (closed_form.least_compute_for_loss per row)."""
    exponent = -(law.alpha + law.beta) / (law.alpha * law.beta)
    coefficient = closed_form.optimal_loss_coefficient(law)
    with np.errstate(all="ignore"):
        # Same operations, in the same order, as least_compute_for_loss.
        log_compute = math.log(k) + exponent * np.log((targets - law.E) / coefficient)
        compute = np.exp(log_compute)
    answerable = (targets > law.E) & (log_compute < LOG_MAX_COMPUTE - EDGE)
    floor = loss_floor(law, caps)
    if floor is not None:
        answerable &= targets > floor * (1 + EDGE)
    return _rows(law, compute, caps, k, answerable, "target_loss")


def loss_floor(law: ChinchillaLaw, caps: Caps) -> float | None:
    """The least loss the caps on N and D allow at any compute; None without such caps."""
    d_cap = caps.tokens_cap()
    if caps.max_params is None and d_cap is None:
        return None
    floor = law.E
    if caps.max_params is not None:
        floor += law.A * caps.max_params**-law.alpha
    if d_cap is not None:
        floor += law.B * d_cap[0] ** -law.beta
    return floor


def _rows(
    law: ChinchillaLaw, compute: Array, caps: Caps, k: float, answerable: Mask, binding: str
) -> ClosedFormRows:
    f = closed_form.frontier_constants(law)
    with np.errstate(all="ignore"):
        scaled = compute / k
        params = f.g * scaled**f.a
        tokens = scaled / params  # from the budget line, as optimal_allocation
        loss = law.predict(params, tokens)
        flops = k * params * tokens
    answered = answerable & _inside(params, tokens, caps)
    for values in (params, tokens, loss, flops):
        answered &= (values > SMALLEST) & (values < LARGEST)
    return ClosedFormRows(params, tokens, loss, flops, answered, binding)


def _inside(params: Array, tokens: Array, caps: Caps) -> Mask:
    """Rows whose free optimum lies clearly inside the caps (no cap binds)."""
    inside = np.ones(params.shape, dtype=bool)
    if caps.max_params is not None:
        inside &= params <= caps.max_params * (1 - EDGE)
    d_cap = caps.tokens_cap()
    if d_cap is not None:
        inside &= tokens <= d_cap[0] * (1 - EDGE)
    return inside


@dataclass(frozen=True)
class Labels:
    """One string per row, as codes into the few distinct names the rows share."""

    codes: NDArray[np.intp]
    names: tuple[str, ...]

    def __getitem__(self, row: int) -> str:
        return self.names[int(self.codes[row])]


@dataclass(frozen=True)
class BatchPlans:
    """Every row's plan as parallel arrays; binding names joined by commas per row."""

    params: Array
    tokens: Array
    loss: Array
    flops: Array
    binding: Labels
    solver: Labels


def assemble(
    count: int, plans: Mapping[int, ComputeOptimalPlan], closed: ClosedFormRows | None = None
) -> BatchPlans:
    """The closed form's answered rows and the single-plan path's `plans` (by row) together;
    every row must be in one or the other."""
    params, tokens, loss, flops = (np.empty(count) for _ in range(4))
    binding, solver = _LabelsBuilder(count), _LabelsBuilder(count)
    if closed is not None:
        mask = closed.answered
        for target, source in zip(
            (params, tokens, loss, flops),
            (closed.params, closed.tokens, closed.loss, closed.flops),
            strict=True,
        ):
            target[mask] = source[mask]
        binding.fill(mask, closed.binding)
        solver.fill(mask, CLOSED_FORM)
    for row, plan in plans.items():
        params[row], tokens[row], loss[row], flops[row] = (
            plan.params,
            plan.tokens,
            plan.loss,
            plan.flops,
        )
        binding.set(row, ",".join(plan.binding))
        solver.set(row, plan.solver)
    answered = len(plans) + (0 if closed is None else int(np.count_nonzero(closed.answered)))
    if answered != count:
        raise ValueError(f"{count - answered} of {count} rows have no plan")
    return BatchPlans(params, tokens, loss, flops, binding.build(), solver.build())


class _LabelsBuilder:
    def __init__(self, count: int) -> None:
        self._codes = np.zeros(count, dtype=np.intp)
        self._index: dict[str, int] = {}

    def _code(self, name: str) -> int:
        return self._index.setdefault(name, len(self._index))

    def fill(self, mask: Mask, name: str) -> None:
        self._codes[mask] = self._code(name)

    def set(self, row: int, name: str) -> None:
        self._codes[row] = self._code(name)

    def build(self) -> Labels:
        return Labels(self._codes, tuple(self._index))


def solve_each(solve: Callable[[Q], P], queries: Sequence[Q]) -> list[P | Exception]:
    """In a worker process: each query's answer, or the error it raised (errors cross back
    pickled, so one row's failure does not lose the others' answers)."""
    outcomes: list[P | Exception] = []
    for query in queries:
        try:
            outcomes.append(solve(query))
        except Exception as error:
            outcomes.append(error)
    return outcomes


# -- predictions -------------------------------------------------------------------------------


def predict_losses(law: Law, params: Array, tokens: Array, unique: Array | None) -> Array:
    """Loss of every (N, D[, U]) point, as planner.laws.predict_loss per point (unique tokens
    matter only to forms that model repetition); inf or NaN where the law overflows."""
    with np.errstate(all="ignore"):
        if isinstance(law, DataConstrainedLaw):
            return np.asarray(law.predict(params, tokens, unique), dtype=np.float64)
        return np.asarray(law.predict(params, tokens), dtype=np.float64)


def loss_bands(
    law: Law,
    ensemble: Array,
    params: Array,
    tokens: Array,
    unique: Array | None,
    max_cells: int = BAND_CELLS,
) -> tuple[Array, Array]:
    """Each point's 95% band of the law over the ensemble (uncertainty.law_loss_interval
    without residual noise), as (low, high); NaN where fewer than MIN_ROWS rows give a finite
    loss (where the single prediction has no interval)."""
    low, high = np.full(params.shape, np.nan), np.full(params.shape, np.nan)
    k = law.k if isinstance(law, BnslComputeLaw | ComputePowerLaw) else None
    step = max(1, max_cells // max(1, ensemble.shape[0]))
    for start in range(0, params.size, step):
        block = slice(start, start + step)
        # Column vectors of points against the rows: a (points, rows) matrix of losses.
        losses = row_losses(
            law.form,
            ensemble,
            params[block, None],
            tokens[block, None],
            None if unique is None else unique[block, None],
            k,
        )
        low[block], high[block] = _percentiles(losses)
    return low, high


def _percentiles(losses: Array) -> tuple[Array, Array]:
    """2.5 and 97.5 percentiles of each matrix row's finite values (uncertainty._interval)."""
    low, high = np.full(losses.shape[0], np.nan), np.full(losses.shape[0], np.nan)
    finite = np.isfinite(losses)
    clean = finite.all(axis=1)
    if losses.shape[1] >= MIN_ROWS and clean.any():
        low[clean], high[clean] = np.percentile(losses[clean], [LOW, HIGH], axis=1)
    for point in np.flatnonzero(~clean):  # rare: some rows overflow at this point
        values = losses[point, finite[point]]
        if values.size >= MIN_ROWS:
            low[point], high[point] = np.percentile(values, [LOW, HIGH])
    return low, high
