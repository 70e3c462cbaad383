"""Chinchilla Approach 2 (IsoFLOP profiles), offered for comparison, never as the default.

Per compute budget: a parabola of loss against log10 N, its vertex as N_opt(C); then power laws
N_opt = k_n C^a and D_opt = k_d C^b through the vertices. Known bias (LAWS.md §1.6): exact on
symmetric surfaces (alpha = beta); otherwise the fitted exponent is unbiased but the intercept
is off by a factor 10^dw that grows with the grid width and |alpha - beta|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import Infeasible, InvalidInput

MIN_POINTS_PER_BUDGET = 3
# Two vertices always lie on a line: a third is the least that tests the power law at all.
MIN_BUDGETS = 3
SHOWN_BUDGETS = 8
KNOWN_BIAS = (
    "Approach 2 is biased unless alpha = beta: the intercept (hence tokens per parameter) is off "
    "by a factor that grows with the sampling grid's width (LAWS.md §1.6)"
)


@dataclass(frozen=True)
class IsoflopFit:
    """Vertices per budget and the power laws through them."""

    budgets: tuple[float, ...]
    optimal_params: tuple[float, ...]
    params_exponent: float  # a in N_opt = k_n C^a
    params_coefficient: float  # k_n
    tokens_exponent: float  # b in D_opt = k_d C^b
    tokens_coefficient: float  # k_d
    caveat: str = KNOWN_BIAS

    def optimal(self, compute: float) -> tuple[float, float]:
        return (
            self.params_coefficient * compute**self.params_exponent,
            self.tokens_coefficient * compute**self.tokens_exponent,
        )


# Runs whose compute lies within this many decades of the previous one share a profile.
BUDGET_GAP_DECADES = 0.1


def nominal_budgets(flops: ArrayLike) -> NDArray[np.float64]:
    """Each run's budget when runs report only their compute: sorted in log10, a gap wider than
    0.1 decade (26%) starts a new profile; a profile's budget is its geometric mean. IsoFLOP
    grids space budgets by >= 1.5x, while one profile's k N D scatters by a few percent."""
    values = np.asarray(flops, dtype=np.float64)
    logs = np.log10(values)
    order = np.argsort(logs)
    group = np.empty(values.size, dtype=np.intp)
    group[order] = np.concatenate([[0], np.cumsum(np.diff(logs[order]) > BUDGET_GAP_DECADES)])
    means = np.array([logs[group == g].mean() for g in range(int(group.max()) + 1)])
    return np.asarray(10 ** means[group])


def _too_few_profiles(counts: NDArray[np.intp], convex: int) -> str:
    """Why Approach 2 refuses, with what the runs offered."""
    full = int(np.sum(counts >= MIN_POINTS_PER_BUDGET))
    ordered = sorted((int(c) for c in counts), reverse=True)
    shown = ", ".join(str(c) for c in ordered[:SHOWN_BUDGETS])
    if len(ordered) > SHOWN_BUDGETS:
        shown += ", ..."
    found = (
        f"found {int(counts.sum())} runs in {counts.size} budgets (runs per budget: {shown}), "
        f"{full} of them with >= {MIN_POINTS_PER_BUDGET} runs"
    )
    if convex < full:
        found += f" and {convex} of those with a convex profile (a parabola with a minimum)"
    return (
        f"Approach 2 needs at least {MIN_BUDGETS} compute budgets with >= "
        f"{MIN_POINTS_PER_BUDGET} runs each and a convex profile: a parabola per budget, then a "
        f"power law through the vertices, which two vertices cannot test; {found}. Add IsoFLOP "
        f"profiles: several model sizes at each of {MIN_BUDGETS} or more budgets"
    )


def fit_isoflop(
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    budgets: ArrayLike,
    flops_per_param_token: float = 6.0,
) -> IsoflopFit:
    """Fit Approach 2 to runs grouped by their (nominal) compute budget."""
    n, d, values, group = (np.asarray(v, dtype=np.float64) for v in (params, tokens, loss, budgets))
    if not (n.size == d.size == values.size == group.size) or n.size == 0:
        raise InvalidInput("runs", "params, tokens, loss and budgets must be equal, non-empty")
    budget_values, counts = np.unique(group, return_counts=True)
    vertices: list[tuple[float, float]] = []
    for budget, count in zip(budget_values, counts, strict=True):
        if count < MIN_POINTS_PER_BUDGET:
            continue
        mask = group == budget
        curvature, slope, _ = np.polyfit(np.log10(n[mask]), values[mask], 2)
        if curvature <= 0:
            continue  # no minimum along this profile
        vertices.append((float(budget), float(10 ** (-slope / (2 * curvature)))))
    if len(vertices) < MIN_BUDGETS:
        raise Infeasible(_too_few_profiles(counts, len(vertices)), field="runs")
    c = np.array([v[0] for v in vertices])
    n_opt = np.array([v[1] for v in vertices])
    a, log_kn = np.polyfit(np.log(c), np.log(n_opt), 1)
    d_opt = c / (flops_per_param_token * n_opt)
    b, log_kd = np.polyfit(np.log(c), np.log(d_opt), 1)
    return IsoflopFit(
        budgets=tuple(float(v) for v in c),
        optimal_params=tuple(float(v) for v in n_opt),
        params_exponent=float(a),
        params_coefficient=float(np.exp(log_kn)),
        tokens_exponent=float(b),
        tokens_coefficient=float(np.exp(log_kd)),
    )
