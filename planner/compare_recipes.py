"""One comparison of two stored laws (CompareLaws), answered in the domain.

Each law becomes a recipe, a loss falling with compute (planner.comparison): a Chinchilla-form law
along a path through (N, D) space (compute-optimal, or M tokens per parameter) with its family's
k; a compute_power or bnsl_compute law as the curve of compute it is. On the accelerator-hours
axis each recipe's compute is its hours times its achieved FLOP/s. Bands pair ensemble row i of
the first law with row i of the second (the shorter length; both fits are independent, so any
pairing is a draw from the joint distribution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from planner.comparison import (
    BnslOfCompute,
    ChinchillaAlong,
    LossOfCompute,
    OffsetPowerLaw,
    OnAcceleratorHours,
    OnParams,
    Stretch,
    compute_multiplier,
    power_of_compute,
    winners,
)
from planner.errors import InvalidInput, PlannerError, WrongLawForm
from planner.laws import BnslComputeLaw, BnslLaw, ComputePowerLaw, Law
from planner.laws.bnsl import Break, BrokenPowerLaw
from planner.laws.chinchilla import ChinchillaLaw
from planner.validation import positive

Array = NDArray[np.float64]
PATHS = ("compute_optimal", "multiplier")
AXES = ("flops", "accelerator_hours", "params")
DEFAULT_FLOPS_RANGE = (1e15, 1e30)
# The params axis (N at a fixed tokens-per-parameter ratio): from tiny models to beyond any.
DEFAULT_PARAMS_RANGE = (1e6, 1e14)
MAX_BUDGETS = 100
DEFAULT_POINTS, MIN_POINTS, MAX_POINTS = 100, 2, 1000
# Rows paired for a band: enough for p5/p95; more only costs inversions (rows x budgets).
BAND_ROWS = 200
MIN_BAND_ROWS = 10
BAND = (5.0, 50.0, 95.0)
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Recipe:
    """A stored law with its family's FLOPs per param-token and, when fitted, its ensemble
    (the form's columns) and, for Chinchilla-form laws, the same rows as (E, A, B, alpha,
    beta)."""

    law: Law
    flops_per_param_token: float = 6.0
    ensemble: Array | None = None
    chinchilla_ensemble: Array | None = None


@dataclass(frozen=True)
class ComparisonQuery:
    """The request's settings, named as CompareLawsRequest's fields (errors name them)."""

    path: str = ""
    multiplier: float | None = None
    axis: str = ""
    first_flops_per_accelerator_second: float | None = None
    second_flops_per_accelerator_second: float | None = None
    low: float | None = None
    high: float | None = None
    budgets: tuple[float, ...] = ()
    points: int = 0

    def validated(self) -> ComparisonQuery:
        path = self.path or "compute_optimal"
        if path not in PATHS:
            raise InvalidInput("path", f"unknown path {self.path!r}; known: {list(PATHS)}")
        if path == "multiplier":
            if self.multiplier is None:
                raise InvalidInput("multiplier", "is required for path 'multiplier'")
            positive("multiplier", self.multiplier)
        elif self.multiplier is not None:
            raise InvalidInput("multiplier", "applies only to path 'multiplier'")
        axis = self.axis or "flops"
        if axis not in AXES:
            raise InvalidInput("axis", f"unknown axis {self.axis!r}; known: {list(AXES)}")
        if axis == "params" and path != "multiplier":
            raise InvalidInput(
                "axis",
                "'params' compares model sizes at a fixed tokens-per-parameter ratio: "
                "it needs path 'multiplier'",
            )
        for name in ("first", "second"):
            field = f"{name}_flops_per_accelerator_second"
            value = getattr(self, field)
            if axis == "accelerator_hours":
                if value is None:
                    raise InvalidInput(field, "is required for axis 'accelerator_hours'")
                positive(field, value)
            elif value is not None:
                raise InvalidInput(field, "applies only to axis 'accelerator_hours'")
        if len(self.budgets) > MAX_BUDGETS:
            raise InvalidInput("budgets", f"at most {MAX_BUDGETS}, got {len(self.budgets)}")
        budgets = tuple(positive(f"budgets[{i}]", b) for i, b in enumerate(self.budgets))
        points = self.points or DEFAULT_POINTS
        if not MIN_POINTS <= points <= MAX_POINTS:
            raise InvalidInput("points", f"must be {MIN_POINTS} to {MAX_POINTS}, got {points}")
        query = replace(self, path=path, axis=axis, budgets=budgets, points=points)
        low, high = query.axis_range()
        if not low < high:
            raise InvalidInput("high", f"must be above low ({low:g}), got {high:g}")
        return query

    def _axis_scale(self, recipe: str) -> float:
        """FLOPs per unit of the axis for the first or second recipe."""
        if self.axis != "accelerator_hours":
            return 1.0
        speed = getattr(self, f"{recipe}_flops_per_accelerator_second")
        assert speed is not None  # validated
        return SECONDS_PER_HOUR * float(speed)

    def axis_range(self) -> tuple[float, float]:
        """[low, high] on the axis: as given, else 1e15-1e30 FLOPs in the first recipe's
        units."""
        scale = self._axis_scale("first")
        default = DEFAULT_PARAMS_RANGE if self.axis == "params" else DEFAULT_FLOPS_RANGE
        if self.axis == "params":
            scale = 1.0
        low = default[0] / scale if self.low is None else positive("low", self.low)
        high = default[1] / scale if self.high is None else positive("high", self.high)
        return low, high

    def flops_window(self, recipe: str) -> tuple[float, float]:
        """The FLOPs a recipe is looked at: the axis range and the budgets."""
        low, high = self.axis_range()
        scale = self._axis_scale(recipe)
        return min((low, *self.budgets)) * scale, max((high, *self.budgets)) * scale

    def on_axis(self, curve: LossOfCompute, recipe: str, k: float) -> LossOfCompute:
        """The recipe's curve on the axis (`k`: its family's FLOPs per param-token)."""
        if self.axis == "params":
            assert self.multiplier is not None  # validated: path multiplier
            return OnParams(curve, self.multiplier, k)
        if self.axis != "accelerator_hours":
            return curve
        return OnAcceleratorHours(curve, self._axis_scale(recipe) / SECONDS_PER_HOUR)


@dataclass(frozen=True)
class Comparison:
    crossovers: list[float]
    stretches: list[Stretch]
    multipliers: list[float]
    first_losses: list[float]
    # (p5, p50, p95) of the multiplier at each budget; None without both ensembles.
    bands: list[tuple[float, float, float] | None]
    axis_values: list[float]
    first_curve: list[float]
    second_curve: list[float]


def _curve(law: Law, recipe: Recipe, query: ComparisonQuery, which: str) -> LossOfCompute:
    """The law as a loss of FLOPs."""
    if query.axis == "params" and isinstance(law, ComputePowerLaw | BnslLaw):
        raise WrongLawForm(
            f"axis 'params' needs laws of N and D (a chinchilla-family form); the {which} law "
            f"is {law.form}, a curve of compute alone"
        )
    if isinstance(law, ComputePowerLaw):
        return power_of_compute(law)
    if isinstance(law, BnslComputeLaw):
        return BnslOfCompute(law.curve(), *query.flops_window(which))
    if isinstance(law, BnslLaw):
        raise WrongLawForm(
            f"CompareLaws needs a chinchilla-family law or a law of compute (compute_power, "
            f"bnsl_compute); the {which} law is {law.form}, a curve of {law.variable} alone"
        )
    multiplier = query.multiplier if query.path == "multiplier" else None
    return ChinchillaAlong(law.as_chinchilla(), multiplier, recipe.flops_per_param_token)


def _row_curves(recipe: Recipe, query: ComparisonQuery, which: str) -> list[LossOfCompute | None]:
    """One curve per ensemble row (None where a row's law is not usable)."""
    law = recipe.law
    rows = recipe.ensemble if isinstance(law, BnslLaw | ComputePowerLaw) else None
    if rows is None:
        rows = recipe.chinchilla_ensemble
    if rows is None:
        return []
    curves: list[LossOfCompute | None] = []
    for row in np.asarray(rows, dtype=np.float64)[:BAND_ROWS]:
        try:
            if not np.all(np.isfinite(row)):
                raise ValueError("a failed resample")
            if isinstance(law, ComputePowerLaw):
                l_inf, a, alpha, c0 = row
                curve: LossOfCompute = OffsetPowerLaw(a, c0, -alpha, l_inf)
            elif isinstance(law, BnslComputeLaw):
                breaks = tuple(Break(*row[i : i + 3]) for i in range(3, row.size, 3))
                bnsl = BrokenPowerLaw(row[0], row[1], row[2], breaks)
                curve = BnslOfCompute(bnsl, *query.flops_window(which))
            else:
                e, big_a, big_b, alpha, beta = row
                chinchilla = ChinchillaLaw(E=e, A=big_a, B=big_b, alpha=alpha, beta=beta)
                curve = _curve(chinchilla, recipe, query, which)
            curves.append(query.on_axis(curve, which, recipe.flops_per_param_token))
        except (PlannerError, ValueError):
            curves.append(None)
    return curves


def _band(values: Sequence[float]) -> tuple[float, float, float] | None:
    usable = np.array([v for v in values if not math.isnan(v)])
    if usable.size < MIN_BAND_ROWS:
        return None
    # Sample quantiles (no interpolation): a row that never matches gives +inf, and inf
    # must not be averaged with a finite neighbour.
    low, median, high = np.percentile(usable, BAND, method="inverted_cdf")
    return float(low), float(median), float(high)


def _bands(
    first: Recipe, second: Recipe, query: ComparisonQuery
) -> list[tuple[float, float, float] | None]:
    pairs = list(
        zip(_row_curves(first, query, "first"), _row_curves(second, query, "second"), strict=False)
    )
    if not pairs:
        return [None] * len(query.budgets)
    by_budget: list[list[float]] = [[] for _ in query.budgets]
    for a, b in pairs:
        if a is None or b is None:
            continue
        try:
            values = compute_multiplier(a, b, query.budgets)
        except (PlannerError, ValueError, ArithmeticError):
            continue
        for i, value in enumerate(values):
            by_budget[i].append(value)
    return [_band(values) for values in by_budget]


def compare(first: Recipe, second: Recipe, query: ComparisonQuery) -> Comparison:
    """Crossovers, winners, multipliers at the budgets (with bands) and curves for plotting."""
    q = query.validated()
    a = q.on_axis(_curve(first.law, first, q, "first"), "first", first.flops_per_param_token)
    b = q.on_axis(_curve(second.law, second, q, "second"), "second", second.flops_per_param_token)
    low, high = q.axis_range()
    stretches = winners(a, b, low, high)
    multipliers = compute_multiplier(a, b, q.budgets)
    axis = np.geomspace(low, high, q.points)
    with np.errstate(all="ignore"):
        first_curve, second_curve = a.loss(axis), b.loss(axis)
    return Comparison(
        crossovers=[s.high for s in stretches[:-1]],
        stretches=stretches,
        multipliers=multipliers,
        first_losses=[float(a.loss(c)) for c in q.budgets],
        bands=_bands(first, second, q) if q.budgets else [],
        axis_values=[float(v) for v in axis],
        first_curve=[float(v) for v in first_curve],
        second_curve=[float(v) for v in second_curve],
    )
