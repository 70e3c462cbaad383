"""Compute-optimal N and D when unique data is limited and may be repeated (LAWS.md §4.1).

The data-constrained law is not a posynomial (exp(-R/R*) saturation), so this is no GP. On the
budget line D = C / (k N) the loss is a smooth function of ln N (the max(., 0) kinks have equal
one-sided slopes) that was convex in every case checked; still, a coarse scan over ln N picks
the bracket before the bounded scalar refine, so a non-convex case costs accuracy, not a wrong
basin. The least compute for a loss target is found by bisection on ln C over that budget
solve: the best loss at budget C falls as C grows, since L falls in both N and D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from planner.errors import Infeasible, InvalidInput
from planner.laws.data_constrained import DataConstrainedLaw, params_supported
from planner.planning import closed_form
from planner.planning.compute_optimal import Caps, ComputeOptimalPlan, check_budget_spendable
from planner.planning.float_range import out_of_range_refused, require_in_range
from planner.validation import positive

SOLVER = "scalar/bounded"
# Scan width around the unlimited-data optimum, in factors of N either way; the repetition
# optimum moves N by far less (x0.76 in the paper's 1e22 / 25e9 example).
SCAN_FACTOR = 1e4
SCAN_POINTS = 401
LOG_N_TOLERANCE = 1e-10


@dataclass(frozen=True)
class RepeatedDataQuery:
    """A budget (minimise loss) or a loss target (minimise compute) with U unique tokens."""

    law: DataConstrainedLaw
    unique_tokens: float
    compute: float | None = None
    target_loss: float | None = None
    caps: Caps = field(default_factory=Caps)
    flops_per_param_token: float = 6.0

    def validated(self) -> RepeatedDataQuery:
        if (self.compute is None) == (self.target_loss is None):
            raise InvalidInput("goal", "give exactly one of a compute budget or a target loss")
        unique = positive("unique_tokens", self.unique_tokens)
        caps = Caps(
            max_params=self.caps.max_params,
            max_tokens=self.caps.max_tokens,
            unique_tokens=unique,
            max_epochs=self.caps.max_epochs,
        ).validated()
        return RepeatedDataQuery(
            law=self.law,
            unique_tokens=unique,
            compute=None if self.compute is None else positive("budget.flops", self.compute),
            target_loss=(
                None if self.target_loss is None else positive("target_loss", self.target_loss)
            ),
            caps=caps,
            flops_per_param_token=positive("flops_per_param_token", self.flops_per_param_token),
        )

    def tokens_cap(self) -> tuple[float, tuple[str, ...]] | None:
        """D caps: max_tokens, and unique_tokens x max_epochs only when max_epochs is set
        (repeating is allowed; the law prices it)."""
        candidates: list[tuple[float, str]] = []
        if self.caps.max_tokens is not None:
            candidates.append((self.caps.max_tokens, "max_tokens"))
        if self.caps.max_epochs is not None:
            candidates.append((self.unique_tokens * self.caps.max_epochs, "max_epochs"))
        if not candidates:
            return None
        value = min(v for v, _ in candidates)
        return value, tuple(name for v, name in candidates if v <= value * (1 + 1e-12))


def solve_repeated(query: RepeatedDataQuery) -> ComputeOptimalPlan:
    """The optimum for the query; Infeasible when no plan satisfies it."""
    query = query.validated()
    with out_of_range_refused("the budget, target and caps"):
        if query.compute is not None:
            return _budget(query, query.compute)
        assert query.target_loss is not None
        return _target(query, query.target_loss)


def _loss(query: RepeatedDataQuery, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return query.law.predict(params, tokens, np.full_like(params, query.unique_tokens))


def _budget(query: RepeatedDataQuery, compute: float) -> ComputeOptimalPlan:
    k = query.flops_per_param_token
    n_cap = query.caps.max_params
    d_cap = query.tokens_cap()
    check_budget_spendable(compute, k, n_cap, d_cap)
    n_free, _ = closed_form.optimal_allocation(query.law.as_chinchilla(), compute, k)
    low = math.log(n_free / SCAN_FACTOR)
    high = math.log(n_free * SCAN_FACTOR)
    low_cap = None if d_cap is None else math.log(compute / (k * d_cap[0]))
    high_cap = None if n_cap is None else math.log(n_cap)
    if low_cap is not None:
        low = max(low, low_cap)
        high = max(high, low_cap)
    if high_cap is not None:
        high = min(high, high_cap)
        low = min(low, high_cap)
    log_n = _minimise_on_budget_line(query, compute, low, high)
    params = math.exp(log_n)
    binding = ["compute"]
    if high_cap is not None and log_n >= high_cap - 1e-9:
        params = n_cap  # type: ignore[assignment]
        binding.append("max_params")
    if low_cap is not None and d_cap is not None and log_n <= low_cap + 1e-9:
        binding.extend(d_cap[1])
        tokens = d_cap[0]
        params = compute / (k * tokens)
    else:
        tokens = compute / (k * params)
    return _plan(query, params, tokens, binding)


def _minimise_on_budget_line(
    query: RepeatedDataQuery, compute: float, low: float, high: float
) -> float:
    """argmin over ln N in [low, high] of L(N, C / (k N), U): scan, then bounded refine."""
    if high - low < LOG_N_TOLERANCE:
        return high
    k = query.flops_per_param_token
    grid = np.linspace(low, high, SCAN_POINTS)
    params = np.exp(grid)
    losses = _loss(query, params, compute / (k * params))
    if not np.any(np.isfinite(losses)):
        raise Infeasible(f"the law gives no finite loss on the budget line C = {compute:g}")
    best = int(np.nanargmin(losses))
    left = grid[max(best - 1, 0)]
    right = grid[min(best + 1, SCAN_POINTS - 1)]

    def objective(log_n: float) -> float:
        n = np.array([math.exp(log_n)])
        return float(_loss(query, n, compute / (k * n))[0])

    result = minimize_scalar(
        objective, bounds=(left, right), method="bounded", options={"xatol": LOG_N_TOLERANCE}
    )
    candidates = [(float(result.fun), float(result.x)), (float(losses[best]), float(grid[best]))]
    # The scan's ends are caps; the refine stops xatol short of them.
    return min(candidates)[1]


def _floor(query: RepeatedDataQuery) -> tuple[float, list[str]]:
    """The loss approached as compute grows without bound under the caps."""
    law = query.law
    d_cap = query.tokens_cap()
    # The unique tokens a run can see: all of U, or fewer when D is capped below U.
    u = query.unique_tokens if d_cap is None else min(query.unique_tokens, d_cap[0])
    supported = float(params_supported(u, law.A, law.B, law.alpha, law.beta))
    limits = []
    if query.caps.max_params is not None:
        n_eff = float(law.effective_params(query.caps.max_params, u, u))
        limits.append(f"max_params = {query.caps.max_params:g}")
    else:
        n_eff = supported * (1 + law.r_n_star)
    if d_cap is not None:
        d_eff = float(law.effective_tokens(d_cap[0], query.unique_tokens))
        limits.append(f"{'/'.join(d_cap[1])} = {d_cap[0]:g}")
    else:
        d_eff = u * (1 + law.r_d_star)
    limits.append(f"unique_tokens = {u:g}")
    return law.E + law.A * n_eff**-law.alpha + law.B * d_eff**-law.beta, limits


def _target(query: RepeatedDataQuery, target: float) -> ComputeOptimalPlan:
    floor, limits = _floor(query)
    if not target > floor:
        raise Infeasible(
            f"with {' and '.join(limits)} the loss cannot go below {floor:.6g} at any compute "
            f"(repeated data and excess parameters saturate); target_loss {target:g} is "
            f"{floor - target:.4g} nats below that",
            field="target_loss",
        )
    k = query.flops_per_param_token
    chinchilla = query.law.as_chinchilla()
    # Unlimited fresh data is never worse: the least compute is at least Chinchilla's.
    low = math.log(closed_form.least_compute_for_loss(chinchilla, target, k))
    n_cap = query.caps.max_params
    d_cap = query.tokens_cap()
    if n_cap is not None and d_cap is not None:
        high = math.log(k * n_cap * d_cap[0])
        if _budget(query, math.exp(high)).loss > target:
            raise Infeasible(
                f"even the largest plan the caps allow ({math.exp(high):.6g} FLOPs) misses "
                f"target_loss {target:g}",
                field="target_loss",
            )
    else:
        high = low + 1.0
        while _budget(query, math.exp(high)).loss > target:
            high += 1.0
            if high > low + 200:
                raise Infeasible(f"target_loss {target:g} needs more than e^200 x the compute")

    def gap(log_c: float) -> float:
        return _budget(query, math.exp(log_c)).loss - target

    log_c = low if gap(low) <= 0 else brentq(gap, low, high, xtol=1e-13, rtol=1e-15)
    plan = _budget(query, math.exp(log_c))
    binding = ["target_loss", *(b for b in plan.binding if b != "compute")]
    return _plan(query, plan.params, plan.tokens, binding)


def _plan(
    query: RepeatedDataQuery, params: float, tokens: float, binding: list[str]
) -> ComputeOptimalPlan:
    loss = float(_loss(query, np.array([params]), np.array([tokens]))[0])
    plan = ComputeOptimalPlan(
        params=params,
        tokens=tokens,
        loss=loss,
        flops=query.flops_per_param_token * params * tokens,
        binding=tuple(binding),
        solver=SOLVER,
        epochs=tokens / query.unique_tokens,
    )
    numbers = (plan.params, plan.tokens, plan.loss, plan.flops)
    require_in_range("optimum", numbers, N=params, D=tokens)
    return plan
