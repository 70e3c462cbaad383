"""Closed forms of the Chinchilla optimum and its dual (LAWS.md §1.7 (a), (b)).

With k FLOPs per param per token (6 by default) the budget line is k N D = C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import Infeasible
from planner.laws.chinchilla import ChinchillaLaw


@dataclass(frozen=True)
class FrontierConstants:
    """a, b: exponents of N_opt and D_opt in C; g: the frontier constant G."""

    a: float
    b: float
    g: float


def frontier_constants(law: ChinchillaLaw) -> FrontierConstants:
    """a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta))."""
    total = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / total)
    return FrontierConstants(a=law.beta / total, b=law.alpha / total, g=g)


def optimal_allocation(
    law: ChinchillaLaw, compute: float, flops_per_param_token: float = 6.0
) -> tuple[float, float]:
    """(N_opt, D_opt) minimising L on the budget line k N D = C."""
    f = frontier_constants(law)
    scaled = compute / flops_per_param_token
    params = float(f.g * scaled**f.a)
    # D from the budget line rather than G^-1 (C/k)^b, so k N D == C holds to rounding.
    return params, scaled / params


def optimal_loss_coefficient(law: ChinchillaLaw) -> float:
    """K in L_opt(C) - E = K (C/k)^(-alpha beta / (alpha + beta))."""
    f = frontier_constants(law)
    return float(law.A * f.g**-law.alpha + law.B * f.g**law.beta)


def least_compute_for_loss(
    law: ChinchillaLaw, target_loss: float, flops_per_param_token: float = 6.0
) -> float:
    """C_min(l) = k ((l - E) / K)^(-(alpha + beta) / (alpha beta)); needs l > E."""
    if not target_loss > law.E:
        raise Infeasible(
            f"target_loss {target_loss:g} is not above the law's irreducible loss "
            f"E = {law.E:g}: no finite compute reaches it",
            field="target_loss",
        )
    exponent = -(law.alpha + law.beta) / (law.alpha * law.beta)
    ratio = (target_loss - law.E) / optimal_loss_coefficient(law)
    # Work in logs: the power overflows a float for targets close to E.
    log_compute = math.log(flops_per_param_token) + exponent * math.log(ratio)
    if log_compute > math.log(1e300):
        raise Infeasible(
            f"target_loss {target_loss:g} is so close to E = {law.E:g} that reaching it needs "
            f"more than 1e300 FLOPs",
            field="target_loss",
        )
    return math.exp(log_compute)


def params_for_loss_at_tokens(law: ChinchillaLaw, target_loss: float, tokens: float) -> float:
    """N with L(N, D) = target at fixed D; the caller ensures B/D^beta < target - E."""
    return float((law.A / (target_loss - law.E - law.B * tokens**-law.beta)) ** (1.0 / law.alpha))


def tokens_for_loss_at_params(law: ChinchillaLaw, target_loss: float, params: float) -> float:
    """D with L(N, D) = target at fixed N; the caller ensures A/N^alpha < target - E."""
    return float((law.B / (target_loss - law.E - law.A * params**-law.alpha)) ** (1.0 / law.beta))
