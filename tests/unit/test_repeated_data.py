"""Repetition-aware compute-optimal plans against LAWS.md §11.7 and a brute-force grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws.data_constrained import DataConstrainedLaw
from planner.planning.closed_form import optimal_allocation
from planner.planning.compute_optimal import Caps
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from tests.unit.test_laws import MUENNIGHOFF


def reference_loss(law: DataConstrainedLaw, n: np.ndarray, d: np.ndarray, u: float) -> np.ndarray:
    """LAWS.md §4.1 written out again, with the repo's D_to_N for N_opt(U)."""
    u_d = np.minimum(u, d)
    r_d = np.maximum(d / u_d - 1, 0)
    d_eff = u_d + u_d * law.r_d_star * (1 - np.exp(-r_d / law.r_d_star))
    g = ((law.alpha * law.A) / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    u_n = np.minimum(n, (u_d * g) ** (law.beta / law.alpha) * g)
    r_n = np.maximum(n / u_n - 1, 0)
    n_eff = u_n + u_n * law.r_n_star * (1 - np.exp(-r_n / law.r_n_star))
    return np.asarray(law.E + law.A / n_eff**law.alpha + law.B / d_eff**law.beta)


def brute_force(
    law: DataConstrainedLaw,
    compute: float,
    u: float,
    n_max: float = math.inf,
    d_max: float = math.inf,
) -> tuple[float, float]:
    """(N, loss) minimising the loss on a dense grid of N along 6 N D = C within the caps."""
    low = max(1e6, compute / (6 * d_max))
    high = min(1e14, n_max)
    n = np.exp(np.linspace(math.log(low), math.log(high), 2_000_001))
    losses = reference_loss(law, n, compute / (6 * n), u)
    best = int(np.argmin(losses))
    return float(n[best]), float(losses[best])


def test_paper_example_one_e22_flops_and_25b_unique_tokens() -> None:
    """LAWS.md §11.7: continuous optimum N = 7.02616e9, D = 2.37209e11, L = 2.222129."""
    plan = solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 25e9, compute=1e22))
    assert plan.params == pytest.approx(7.02616e9, rel=2e-6)
    assert plan.tokens == pytest.approx(2.37209e11, rel=2e-6)
    assert plan.loss == pytest.approx(2.222129, abs=1e-6)
    # 9.49 epochs (the repo's grid point 2.37337e11 gives 9.4935; the continuous one 9.4884).
    assert plan.epochs == pytest.approx(2.37209e11 / 25e9, rel=2e-6)
    assert plan.flops == pytest.approx(1e22, rel=1e-12)
    assert plan.binding == ("compute",) and plan.solver == "scalar/bounded"


@pytest.mark.parametrize(
    ("compute", "unique", "caps", "binding"),
    [
        (1e22, 25e9, Caps(), ("compute",)),
        (1e21, 1e9, Caps(), ("compute",)),
        (1e23, 1e11, Caps(), ("compute",)),
        (1e22, 25e9, Caps(max_params=5e9), ("compute", "max_params")),
        (1e22, 25e9, Caps(max_epochs=4), ("compute", "max_epochs")),
        (1e22, 25e9, Caps(max_tokens=1.5e11), ("compute", "max_tokens")),
        (1e22, 25e9, Caps(max_params=5e10), ("compute",)),
    ],
)
def test_budget_plans_match_a_brute_force_grid(
    compute: float, unique: float, caps: Caps, binding: tuple[str, ...]
) -> None:
    plan = solve_repeated(RepeatedDataQuery(MUENNIGHOFF, unique, compute=compute, caps=caps))
    d_max = min(
        caps.max_tokens or math.inf, unique * caps.max_epochs if caps.max_epochs else math.inf
    )
    n_grid, loss_grid = brute_force(
        MUENNIGHOFF, compute, unique, caps.max_params or math.inf, d_max
    )
    assert plan.params == pytest.approx(n_grid, rel=1e-4)
    assert plan.loss == pytest.approx(loss_grid, abs=1e-10)
    assert plan.loss <= loss_grid + 1e-12
    assert plan.binding == binding


def test_plenty_of_unique_data_is_the_chinchilla_optimum() -> None:
    """With U far above D and N below N_opt(U) nothing repeats: the closed form answers."""
    plan = solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 1e16, compute=1e21))
    n, d = optimal_allocation(MUENNIGHOFF.as_chinchilla(), 1e21)
    assert plan.params == pytest.approx(n, rel=1e-6)
    assert plan.tokens == pytest.approx(d, rel=1e-6)
    assert plan.epochs is not None and plan.epochs < 1


def test_target_loss_inverts_the_budget_plan() -> None:
    budget = solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 25e9, compute=3e22))
    target = solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 25e9, target_loss=budget.loss))
    assert target.flops == pytest.approx(3e22, rel=1e-6)
    assert target.params == pytest.approx(budget.params, rel=1e-4)
    assert target.binding == ("target_loss",)
    capped = solve_repeated(
        RepeatedDataQuery(MUENNIGHOFF, 25e9, target_loss=2.3, caps=Caps(max_params=2e9))
    )
    assert capped.params == pytest.approx(2e9, rel=1e-9)
    assert capped.loss == pytest.approx(2.3, abs=1e-9)
    assert "max_params" in capped.binding


def test_refusals_name_the_reason() -> None:
    # Repeating 25B tokens forever cannot beat the saturated loss.
    with pytest.raises(Infeasible, match=r"cannot go below 2\.15") as caught:
        solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 25e9, target_loss=2.0))
    assert caught.value.field == "target_loss"
    with pytest.raises(Infeasible, match="allow at most"):
        solve_repeated(
            RepeatedDataQuery(
                MUENNIGHOFF, 25e9, compute=1e24, caps=Caps(max_params=1e9, max_epochs=2)
            )
        )
    with pytest.raises(InvalidInput, match="unique_tokens"):
        solve_repeated(RepeatedDataQuery(MUENNIGHOFF, -1.0, compute=1e22))
    with pytest.raises(InvalidInput, match="goal"):
        solve_repeated(RepeatedDataQuery(MUENNIGHOFF, 25e9))
