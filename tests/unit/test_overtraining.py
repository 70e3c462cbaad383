"""Gadre over-training queries against LAWS.md §3.2/§11.6 and the equivalent Chinchilla law.

Every check goes through an independent route: the Chinchilla form with alpha = beta = 2 eta
(A = a 6^-eta, B = b 6^-eta) evaluated at (N, D), the Chinchilla closed form of §1.7, dense
grids over M, or root finding on the loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from planner.errors import Infeasible, InvalidInput
from planner.laws import OvertrainingLaw
from planner.planning.closed_form import least_compute_for_loss, optimal_allocation
from planner.planning.overtraining import OvertrainingQuery, plan_overtraining

# LAWS.md §11.6 and the 46-task error link of §3.2.
REDPAJAMA = OvertrainingLaw(
    E=1.8366, a=212.2361, b=366.6872, eta=0.13643, epsilon=0.7608, k=1.3229, gamma=0.8907
)
C4 = OvertrainingLaw(E=1.5083, a=141.2772, b=189.5155, eta=0.12124)


def chinchilla_loss(law: OvertrainingLaw, params: float, tokens: float) -> float:
    """L(N, D) written out from §3.2's Chinchilla equivalent, not through the law class."""
    scale = 6.0**-law.eta
    return (
        law.E + law.a * scale * params ** (-2 * law.eta) + law.b * scale * tokens ** (-2 * law.eta)
    )


def test_best_multiplier_is_the_published_value_and_the_grid_minimum() -> None:
    """§3.2: RedPajama M* = 7.42; at fixed compute a grid over M finds the same minimum."""
    plan = plan_overtraining(OvertrainingQuery(REDPAJAMA, compute=1e21))
    assert plan.best_multiplier == pytest.approx(7.42, abs=5e-3)
    grid = np.exp(np.linspace(math.log(0.5), math.log(500), 400_001))
    n = np.sqrt(1e21 / (6 * grid))
    losses = np.array([chinchilla_loss(REDPAJAMA, a, b) for a, b in zip(n, grid * n, strict=True)])
    assert plan.multiplier == pytest.approx(float(grid[np.argmin(losses)]), rel=1e-4)
    assert plan.loss == pytest.approx(float(losses.min()), rel=1e-12)
    assert plan.loss_penalty == pytest.approx(1.0, rel=1e-12)


def test_best_multiplier_plan_is_the_chinchilla_optimum() -> None:
    """With alpha = beta the Chinchilla optimum has D/N = M*: same N, D and least compute."""
    chinchilla = C4.as_chinchilla()
    plan = plan_overtraining(OvertrainingQuery(C4, compute=3e22))
    n, d = optimal_allocation(chinchilla, 3e22)
    assert plan.params == pytest.approx(n, rel=1e-10)
    assert plan.tokens == pytest.approx(d, rel=1e-10)
    by_loss = plan_overtraining(OvertrainingQuery(C4, target_loss=2.3))
    assert by_loss.flops == pytest.approx(least_compute_for_loss(chinchilla, 2.3), rel=1e-10)


@pytest.mark.parametrize("multiplier", [20.0, 320.0, 640.0])
def test_compute_for_a_loss_at_a_fixed_multiplier(multiplier: float) -> None:
    """C from the closed form reaches the loss when evaluated as L(N, D); brentq on C agrees."""
    target = 2.4
    plan = plan_overtraining(
        OvertrainingQuery(REDPAJAMA, target_loss=target, multiplier=multiplier)
    )
    assert plan.tokens / plan.params == pytest.approx(multiplier, rel=1e-12)
    assert 6 * plan.params * plan.tokens == pytest.approx(plan.flops, rel=1e-12)
    assert chinchilla_loss(REDPAJAMA, plan.params, plan.tokens) == pytest.approx(target, rel=1e-12)

    def gap(log_c: float, m: float) -> float:
        n = math.sqrt(math.exp(log_c) / (6 * m))
        return chinchilla_loss(REDPAJAMA, n, m * n) - target

    root = math.exp(brentq(gap, math.log(1e15), math.log(1e30), args=(multiplier,), xtol=1e-13))
    assert plan.flops == pytest.approx(root, rel=1e-9)
    best = math.exp(brentq(gap, math.log(1e15), math.log(1e30), args=(plan.best_multiplier,)))
    assert plan.compute_ratio == pytest.approx(root / best, rel=1e-8)
    assert plan.compute_ratio > 1 and plan.loss_penalty > 1


def test_target_error_goes_through_the_downstream_link() -> None:
    """Err(L) = epsilon - k exp(-gamma L) inverted: the plan's loss predicts the target error."""
    plan = plan_overtraining(OvertrainingQuery(REDPAJAMA, target_error=0.55, multiplier=40.0))
    eps, k, gamma = 0.7608, 1.3229, 0.8907
    assert eps - k * math.exp(-gamma * plan.loss) == pytest.approx(0.55, rel=1e-12)
    assert plan.downstream_error == pytest.approx(0.55, rel=1e-12)


def test_loss_at_fixed_compute_and_multiplier_matches_the_chinchilla_form() -> None:
    plan = plan_overtraining(OvertrainingQuery(C4, compute=1e20, multiplier=100.0))
    assert plan.loss == pytest.approx(chinchilla_loss(C4, plan.params, plan.tokens), rel=1e-12)
    assert plan.downstream_error is None


def test_unreachable_goals_are_infeasible_with_reasons() -> None:
    with pytest.raises(Infeasible, match="irreducible loss"):
        plan_overtraining(OvertrainingQuery(C4, target_loss=1.5, multiplier=20.0))
    with pytest.raises(Infeasible, match="no downstream-error link"):
        plan_overtraining(OvertrainingQuery(C4, target_error=0.5))
    with pytest.raises(Infeasible, match="outside the errors"):
        plan_overtraining(OvertrainingQuery(REDPAJAMA, target_error=0.8))
    with pytest.raises(Infeasible, match="more than 1e300"):
        tiny = OvertrainingLaw(E=0.0, a=1.0, b=1.0, eta=0.1)
        plan_overtraining(OvertrainingQuery(tiny, target_loss=1e-40))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="goal"):
        plan_overtraining(OvertrainingQuery(C4, compute=1e20, target_loss=2.5))
    with pytest.raises(InvalidInput, match="multiplier"):
        plan_overtraining(OvertrainingQuery(C4, compute=1e20, multiplier=-3.0))
    with pytest.raises(InvalidInput, match=r"budget\.flops"):
        plan_overtraining(OvertrainingQuery(C4, compute=math.nan))


def test_extreme_laws_and_multipliers_are_refused_in_words() -> None:
    """Arithmetic that leaves float range is the request's problem, never an exception."""
    steep = OvertrainingLaw(E=1.8, a=1.0, b=1.0, eta=2.0)
    with pytest.raises(Infeasible, match="floating-point range"):
        plan_overtraining(OvertrainingQuery(steep, target_loss=2.0, multiplier=1e200))
    with pytest.raises(Infeasible, match="at least") as caught:
        plan_overtraining(OvertrainingQuery(REDPAJAMA, compute=1e21, multiplier=1e300))
    assert caught.value.field == "multiplier"
    # An error target whose loss is at or below E names the error, not a loss.
    with pytest.raises(Infeasible, match="lowest error") as caught:
        plan_overtraining(OvertrainingQuery(REDPAJAMA, target_error=0.45))
    assert caught.value.field == "target_error"


def test_a_partial_error_link_is_rejected() -> None:
    with pytest.raises(ValueError, match="epsilon, k and gamma"):
        OvertrainingLaw(E=1.5, a=1.0, b=1.0, eta=0.1, epsilon=0.7)
