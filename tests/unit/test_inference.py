"""Inference-aware plans against LAWS.md §11.5 and a brute-force grid over N."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw
from planner.planning.closed_form import optimal_allocation
from planner.planning.inference import Costs, InferenceQuery, plan_inference

# LAWS.md §3.1: the set that reproduces Sardana et al.'s headline numbers.
SARDANA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)


def grid_target(law: ChinchillaLaw, target: float, d_inf: float, n_max: float = math.inf) -> float:
    """N minimising 6ND + 2N D_inf on L(N, D) = target, by a dense grid over ln N."""
    low = (law.A / (target - law.E)) ** (1 / law.alpha) * (1 + 1e-9)
    n = np.exp(np.linspace(math.log(low), math.log(min(1e13, n_max)), 2_000_001))
    d = (law.B / (target - law.E - law.A * n**-law.alpha)) ** (1 / law.beta)
    return float(n[np.argmin(6 * n * d + 2 * n * d_inf)])


def test_figure_1_thirteen_billion_case() -> None:
    """§11.5: 13B Chinchilla-optimal (D 5.765e11) with 2T inference tokens -> a 6.969e9 model on
    1.248e12 tokens, lifetime 8.005e22 vs 9.697e22 FLOPs: saves 1.69e22 (17.4%)."""
    target = SARDANA.loss(13e9, 5.765e11)
    result = plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=target))
    assert result.plan.params == pytest.approx(6.969e9, rel=2e-4)
    assert result.plan.tokens == pytest.approx(1.248e12, rel=2e-4)
    assert result.plan.total_flops == pytest.approx(8.005e22, rel=2e-4)
    assert result.chinchilla.total_flops == pytest.approx(9.697e22, rel=2e-4)
    assert result.chinchilla.params == pytest.approx(13e9, rel=1e-4)
    assert result.saving_flops == pytest.approx(1.69e22, abs=5e19)  # printed to 3 s.f.
    assert result.saving_flops / result.chinchilla.total_flops == pytest.approx(0.174, abs=5e-4)
    assert result.overtraining_ratio == pytest.approx(
        (1.248e12 / 6.969e9) / (5.765e11 / 13e9), rel=1e-3
    )
    assert result.plan.loss == pytest.approx(target, rel=1e-12)
    assert result.binding == ("target_loss",) and result.solver == "gp/CLARABEL"
    assert result.plan.params == pytest.approx(grid_target(SARDANA, target, 2e12), rel=1e-5)


def test_hundred_trillion_inference_tokens() -> None:
    """§11.5: l = 1.89, D_inf = 1e14 -> N 2.347e10, D 2.440e13, lifetime 8.131e24."""
    result = plan_inference(InferenceQuery(SARDANA, 1e14, target_loss=1.89))
    assert result.plan.params == pytest.approx(2.347e10, rel=2e-4)
    assert result.plan.tokens == pytest.approx(2.440e13, rel=2e-4)
    assert result.plan.total_flops == pytest.approx(8.131e24, rel=2e-4)


def test_no_inference_is_the_chinchilla_optimum() -> None:
    result = plan_inference(InferenceQuery(SARDANA, 0.0, compute=1e23))
    n, d = optimal_allocation(SARDANA, 1e23)
    assert result.plan.params == pytest.approx(n, rel=1e-6)
    assert result.plan.tokens == pytest.approx(d, rel=1e-6)
    assert result.saving_flops == pytest.approx(0.0, abs=1e23 * 1e-8)


def test_lifetime_budget_is_the_dual_of_the_target() -> None:
    target = plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=2.05))
    budget = plan_inference(InferenceQuery(SARDANA, 2e12, compute=target.plan.cost))
    assert budget.plan.params == pytest.approx(target.plan.params, rel=1e-5)
    assert budget.plan.loss == pytest.approx(2.05, abs=1e-9)
    assert budget.plan.cost == pytest.approx(target.plan.cost, rel=1e-12)
    assert budget.binding == ("lifetime_budget",)


def test_caps_bind_exactly() -> None:
    target = SARDANA.loss(13e9, 5.765e11)
    capped = plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=target, max_params=5e9))
    assert capped.plan.params == 5e9 and capped.binding == ("target_loss", "max_params")
    assert capped.plan.loss == pytest.approx(target, rel=1e-12)
    short = plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=target, max_tokens=1e12))
    assert short.plan.tokens == pytest.approx(1e12, rel=1e-12)
    assert short.binding == ("target_loss", "max_tokens")
    # With D capped below the free optimum's, the cheapest N is the one that meets the loss there.
    rest = target - SARDANA.E - SARDANA.B * 1e12**-SARDANA.beta
    assert short.plan.params == pytest.approx((SARDANA.A / rest) ** (1 / SARDANA.alpha), rel=1e-9)
    spent = plan_inference(InferenceQuery(SARDANA, 2e12, compute=8e22, max_params=5e9))
    assert spent.plan.params == 5e9 and spent.plan.cost == pytest.approx(8e22, rel=1e-12)


def test_inference_priced_higher_shrinks_the_model() -> None:
    """Inference at 3x the cost per FLOP of training (e.g. low serving MFU) buys a smaller model
    trained longer; it equals tripling the inference demand."""
    target = 2.05
    plain = plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=target))
    pricey = plan_inference(
        InferenceQuery(SARDANA, 2e12, target_loss=target, costs=Costs(inference_mfu=1 / 3))
    )
    tripled = plan_inference(InferenceQuery(SARDANA, 6e12, target_loss=target))
    assert pricey.plan.params < plain.plan.params
    assert pricey.plan.params == pytest.approx(tripled.plan.params, rel=1e-6)
    assert pricey.plan.params == pytest.approx(grid_target(SARDANA, target, 6e12), rel=1e-5)


def test_refusals() -> None:
    with pytest.raises(Infeasible, match="irreducible"):
        plan_inference(InferenceQuery(SARDANA, 1e12, target_loss=1.6))
    with pytest.raises(Infeasible, match="max_tokens"):
        plan_inference(InferenceQuery(SARDANA, 1e12, target_loss=1.75, max_tokens=1e9))
    with pytest.raises(InvalidInput, match="inference_tokens"):
        plan_inference(InferenceQuery(SARDANA, -1.0, target_loss=2.0))
    with pytest.raises(InvalidInput, match="training_mfu"):
        plan_inference(InferenceQuery(SARDANA, 1.0, target_loss=2.0, costs=Costs(training_mfu=2)))
    with pytest.raises(InvalidInput, match="goal"):
        plan_inference(InferenceQuery(SARDANA, 1.0))


def test_a_budget_refused_by_a_params_cap_alone_says_so() -> None:
    """No max_tokens: the refusal names only the cap given (it once formatted None)."""
    from planner.errors import Infeasible
    from planner.laws import ChinchillaLaw
    from planner.planning.inference import Costs, InferenceQuery, plan_inference

    law = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    query = InferenceQuery(
        law, 1e12, compute=1e22, max_params=1e3, costs=Costs(training_weight=1e-30)
    )
    with pytest.raises(Infeasible, match=r"^max_params = 1000 cannot use the budget 1e\+22$"):
        plan_inference(query)
