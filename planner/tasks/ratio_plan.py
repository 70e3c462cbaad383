"""Over-training for a task-loss target on a Chinchilla-form law: the least compute reaching a
loss with D = M N at a fixed multiplier M, against the compute-optimal allocation for it.

The step-1 law of a task law is a ChinchillaLaw (in task-loss units), not a Gadre et al.
over-training law, so PlanOvertraining's closed forms do not apply; on a Chinchilla law:
- along D = M N the loss E + A N^-alpha + B (M N)^-beta falls monotonically in N, so one N
  reaches the target (a bracketed root in ln N);
- the best multiplier for a target is the compute-optimal one, M* = D*/N* at the least compute
  for that loss (closed_form); unlike Gadre's M* it depends on the target;
- loss_penalty: reducible loss at M over that of the compute-optimal allocation of the same
  compute (>= 1); compute_ratio: compute at M over the least compute for the loss (>= 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.optimize import brentq

from planner.laws import ChinchillaLaw
from planner.planning.closed_form import least_compute_for_loss, optimal_allocation
from planner.validation import positive


@dataclass(frozen=True)
class RatioPlan:
    multiplier: float
    params: float
    tokens: float
    flops: float
    loss: float
    best_multiplier: float
    loss_penalty: float
    compute_ratio: float


def params_at_ratio(law: ChinchillaLaw, target_loss: float, multiplier: float) -> float:
    """N with L(N, M N) = target; the caller ensures target > E."""
    reducible = math.log(target_loss - law.E)
    log_a = math.log(law.A)
    log_b = math.log(law.B) - law.beta * math.log(multiplier)

    def excess(x: float) -> float:  # ln(A N^-alpha + B' N^-beta) - ln(target - E), x = ln N
        return float(math.log(math.exp(log_a - law.alpha * x) + math.exp(log_b - law.beta * x)))

    # Each term alone at most the target's reducible loss: the sum is above it (f >= 0); each
    # at most half of it: the sum is below (f <= 0).
    low = max((log_a - reducible) / law.alpha, (log_b - reducible) / law.beta)
    half = reducible - math.log(2.0)
    high = max((log_a - half) / law.alpha, (log_b - half) / law.beta)
    root = brentq(lambda x: excess(x) - reducible, low, high, xtol=1e-14, rtol=1e-15)
    return math.exp(float(root))


def plan_at_ratio(
    law: ChinchillaLaw,
    target_loss: float,
    multiplier: float | None,
    flops_per_param_token: float = 6.0,
) -> RatioPlan:
    """The model reaching `target_loss` at `multiplier` tokens per parameter (the
    compute-optimal ratio for that loss when None). Infeasible for a target at or below E."""
    k = flops_per_param_token
    best_flops = least_compute_for_loss(law, target_loss, k)
    best_params, best_tokens = optimal_allocation(law, best_flops, k)
    best = best_tokens / best_params
    if multiplier is None:
        params, tokens, ratio = best_params, best_tokens, best
    else:
        ratio = positive("multiplier", multiplier)
        params = params_at_ratio(law, target_loss, ratio)
        tokens = ratio * params
    flops = k * params * tokens
    optimal_params, optimal_tokens = optimal_allocation(law, flops, k)
    optimal_reducible = law.loss(optimal_params, optimal_tokens) - law.E
    # Both ratios are >= 1 but for rounding at M = M*.
    return RatioPlan(
        multiplier=ratio,
        params=params,
        tokens=tokens,
        flops=flops,
        loss=target_loss,
        best_multiplier=best,
        loss_penalty=max(1.0, (target_loss - law.E) / optimal_reducible),
        compute_ratio=max(1.0, flops / best_flops),
    )
