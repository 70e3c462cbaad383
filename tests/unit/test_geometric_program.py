"""The compiled GP against the closed form (no binding cap), the corner solutions of LAWS.md
§11.3 and an independent brute-force scan along the constraint faces."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.compute_optimal import (
    Caps,
    ComputeOptimalQuery,
    plan_for_budget,
    plan_for_target_loss,
    try_closed_form,
)
from planner.planning.geometric_program import CompiledGP, compiled_gp
from tests.conftest import EPOCH
from tests.unit.test_closed_form import TABLE_11_2


@pytest.mark.parametrize(("law", "compute"), [(row[0], row[3]) for row in TABLE_11_2])
def test_raw_gp_agrees_with_closed_form(law: ChinchillaLaw, compute: float) -> None:
    """The solver's own point, before any finishing, is within 1e-4 of the closed form."""
    n0, d0 = closed_form.optimal_allocation(law, compute)
    # Centre away from the answer so the solver has to move: a factor 3 off in N.
    centre = (n0 * 3, d0)
    bound = math.log(compute / (6 * centre[0] * centre[1]))
    solution = compiled_gp("budget", False, False).solve(law, centre, bound, None, None)
    assert solution.params == pytest.approx(n0, rel=1e-4)
    assert solution.tokens == pytest.approx(d0, rel=1e-4)
    assert solution.active == {"compute"}


@pytest.mark.parametrize(("law", "compute"), [(row[0], row[3]) for row in TABLE_11_2])
def test_forced_gp_plan_equals_closed_form(law: ChinchillaLaw, compute: float) -> None:
    plan = plan_for_budget(law, compute, force_gp=True)
    n0, d0 = closed_form.optimal_allocation(law, compute)
    assert plan.solver == "gp/CLARABEL"
    assert plan.binding == ("compute",)
    assert (plan.params, plan.tokens) == pytest.approx((n0, d0), rel=1e-9)


def test_params_cap_corner_epoch() -> None:
    """LAWS.md §11.3: Epoch, C = 1e25, N <= 1e11 -> D = 1.666667e13, L = 1.919571."""
    plan = plan_for_budget(EPOCH, 1e25, Caps(max_params=1e11))
    assert plan.params == pytest.approx(1e11, rel=1e-12)
    assert plan.tokens == pytest.approx(1.666667e13, rel=5e-7)
    assert plan.loss == pytest.approx(1.919571, abs=1e-6)
    assert plan.binding == ("compute", "max_params")
    assert plan.solver == "gp/CLARABEL"


def test_tokens_cap_corner_epoch() -> None:
    """LAWS.md §11.3: Epoch, C = 1e25, D <= 2e12 -> N = 8.333333e11, L = 1.917625."""
    plan = plan_for_budget(EPOCH, 1e25, Caps(max_tokens=2e12))
    assert plan.tokens == pytest.approx(2e12, rel=1e-12)
    assert plan.params == pytest.approx(8.333333e11, rel=5e-7)
    assert plan.loss == pytest.approx(1.917625, abs=1e-6)
    assert plan.binding == ("compute", "max_tokens")


def test_unique_tokens_times_epochs_caps_tokens() -> None:
    plan = plan_for_budget(EPOCH, 1e25, Caps(unique_tokens=5e11, max_epochs=4))
    assert plan.tokens == pytest.approx(2e12, rel=1e-12)
    assert plan.binding == ("compute", "unique_tokens")
    # Without max_epochs the unique data may be seen once.
    once = plan_for_budget(EPOCH, 1e25, Caps(unique_tokens=2e12))
    assert once.tokens == pytest.approx(2e12, rel=1e-12)


def _brute_force_budget(law: ChinchillaLaw, compute: float, n_cap: float, d_cap: float) -> float:
    """N minimising the loss on the budget line within the caps, by a dense log grid."""
    low = math.log(compute / (6 * d_cap))
    high = math.log(n_cap)
    grid = np.exp(np.linspace(low, high, 200_001))
    losses = law.predict(grid, compute / (6 * grid))
    return float(grid[int(np.argmin(losses))])


@pytest.mark.parametrize(
    ("compute", "n_cap", "d_cap"),
    [(1e25, 1e11, 1e14), (1e25, 1e13, 2e12), (1e23, 5e9, 1e13), (1e21, 1e12, 1e11)],
)
def test_budget_plan_matches_brute_force(compute: float, n_cap: float, d_cap: float) -> None:
    plan = plan_for_budget(EPOCH, compute, Caps(max_params=n_cap, max_tokens=d_cap))
    step = (math.log(n_cap) - math.log(compute / (6 * d_cap))) / 200_000
    assert math.log(plan.params) == pytest.approx(
        math.log(_brute_force_budget(EPOCH, compute, n_cap, d_cap)), abs=2 * step
    )
    assert 6 * plan.params * plan.tokens == pytest.approx(compute, rel=1e-12)


def test_target_loss_with_params_cap_matches_brute_force() -> None:
    """Least compute for L = 2.0 with N <= 2e10: scan N, take D from the loss constraint."""
    target, n_cap = 2.0, 2e10
    plan = plan_for_target_loss(EPOCH, target, Caps(max_params=n_cap))
    n_floor = (EPOCH.A / (target - EPOCH.E)) ** (1 / EPOCH.alpha)
    grid = np.exp(np.linspace(math.log(n_floor) + 1e-6, math.log(n_cap), 100_001))
    tokens = (EPOCH.B / (target - EPOCH.E - EPOCH.A * grid**-EPOCH.alpha)) ** (1 / EPOCH.beta)
    best = int(np.argmin(grid * tokens))
    assert plan.params == pytest.approx(grid[best], rel=1e-3)
    assert plan.flops == pytest.approx(6 * grid[best] * tokens[best], rel=1e-6)
    assert plan.loss == pytest.approx(target, rel=1e-12)
    assert plan.binding == ("target_loss", "max_params")


def test_target_loss_with_tokens_cap() -> None:
    plan = plan_for_target_loss(EPOCH, 2.0, Caps(max_tokens=5e11))
    assert plan.tokens == pytest.approx(5e11, rel=1e-12)
    assert plan.loss == pytest.approx(2.0, rel=1e-12)
    assert plan.binding == ("target_loss", "max_tokens")
    # More compute than the unconstrained dual, as it must be.
    assert plan.flops > closed_form.least_compute_for_loss(EPOCH, 2.0)


def test_raw_gp_target_loss_agrees_with_dual() -> None:
    compute = closed_form.least_compute_for_loss(EPOCH, 2.2)
    n0, d0 = closed_form.optimal_allocation(EPOCH, compute)
    solution = compiled_gp("loss", False, False).solve(
        EPOCH, (n0 / 2, d0 * 2), math.log(2.2 - EPOCH.E), None, None
    )
    assert solution.params == pytest.approx(n0, rel=1e-4)
    assert solution.tokens == pytest.approx(d0, rel=1e-4)


def test_closed_form_used_when_caps_do_not_bind() -> None:
    plan = plan_for_budget(EPOCH, 5.76e23, Caps(max_params=1e12, max_tokens=1e14))
    assert plan.solver == "closed_form"
    assert plan.params == pytest.approx(7.22487e10, rel=5e-6)


def test_try_closed_form_defers_binding_caps_to_the_solver() -> None:
    query = ComputeOptimalQuery(EPOCH, compute=1e25, caps=Caps(max_params=1e11))
    assert try_closed_form(query) is None
    free = ComputeOptimalQuery(EPOCH, compute=1e25)
    plan = try_closed_form(free)
    assert plan is not None and plan.solver == "closed_form"


def test_caps_that_cannot_absorb_the_budget_are_infeasible() -> None:
    with pytest.raises(Infeasible, match=r"16\.67x less than the budget") as caught:
        plan_for_budget(EPOCH, 1e25, Caps(max_params=1e11, max_tokens=1e12))
    assert caught.value.field == "max_params"


def test_caps_that_keep_loss_above_target_are_infeasible() -> None:
    with pytest.raises(Infeasible, match=r"cannot go below 1\.97755"):
        plan_for_target_loss(EPOCH, 1.9, Caps(max_params=1e10))


@pytest.mark.parametrize(
    ("caps", "field"),
    [
        (Caps(max_params=float("nan")), "max_params"),
        (Caps(max_tokens=-1.0), "max_tokens"),
        (Caps(unique_tokens=0.0), "unique_tokens"),
        (Caps(max_epochs=2.0), "max_epochs"),
        (Caps(unique_tokens=1e12, max_epochs=float("inf")), "max_epochs"),
    ],
)
def test_bad_caps(caps: Caps, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_for_budget(EPOCH, 1e23, caps)
    assert caught.value.field == field


@pytest.mark.parametrize("compute", [0.0, -1e21, float("nan"), float("inf")])
def test_bad_budget(compute: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_for_budget(EPOCH, compute)
    assert caught.value.field == "budget.flops"


CASES = [("budget", (1e11, None)), ("budget", (None, 2e12)), ("loss", (2e10, None))]


def _case(goal: str, caps: tuple[float | None, float | None]) -> tuple[CompiledGP, dict[str, Any]]:
    gp = compiled_gp(goal, caps[0] is not None, caps[1] is not None)  # type: ignore[arg-type]
    compute = 1e25 if goal == "budget" else closed_form.least_compute_for_loss(EPOCH, 2.0)
    centre = closed_form.optimal_allocation(EPOCH, compute)
    bound = 0.0 if goal == "budget" else math.log(2.0 - EPOCH.E)
    return gp, {
        "law": EPOCH,
        "centre": centre,
        "bound": bound,
        "params_cap": caps[0],
        "tokens_cap": caps[1],
    }


@pytest.mark.parametrize(("goal", "caps"), CASES)
def test_fast_resolve_matches_cvxpy_problem_solve(
    goal: str, caps: tuple[float | None, float | None]
) -> None:
    """The direct re-solve finds the same optimum as cvxpy's own Problem.solve()."""
    gp, request = _case(goal, caps)
    fast = gp.solve(**request)
    for name, value in gp.parameter_values(**request).items():
        gp.parameters[name].value = value
    gp.problem.solve(solver="CLARABEL")
    centre = request["centre"]
    assert math.log(fast.params / centre[0]) == pytest.approx(float(gp.x.value), abs=1e-6)
    assert math.log(fast.tokens / centre[1]) == pytest.approx(float(gp.y.value), abs=1e-6)


@pytest.mark.parametrize(("goal", "caps"), CASES)
def test_affine_map_reproduces_cvxpy_problem_data(
    goal: str, caps: tuple[float | None, float | None]
) -> None:
    """At parameter values far from where it was probed, the recorded map gives cvxpy's data."""
    gp, request = _case(goal, caps)
    gp.solve(**request)  # compiles and probes
    affine = gp._affine
    assert affine is not None
    rng = np.random.default_rng(7)
    for _ in range(5):
        values = {name: float(rng.uniform(0.05, 3.0)) for name in gp.parameters}
        for name, value in values.items():
            gp.parameters[name].value = value
        data, _, _ = gp.problem.get_problem_data("CLARABEL")
        a, b, c = affine.data([values[name] for name in gp.parameters])
        np.testing.assert_allclose(a.toarray(), data["A"].toarray(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b, data["b"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c, data["c"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [1e-2, 1e-4, 1e-5, 1e-7, 1e-10])
def test_caps_just_below_the_free_optimum_are_respected(margin: float) -> None:
    """A cap within the solver's tolerance of the free optimum still binds, exactly."""
    n0, d0 = closed_form.optimal_allocation(EPOCH, 1e25)
    plan = plan_for_budget(EPOCH, 1e25, Caps(max_params=n0 * (1 - margin)))
    assert plan.params <= n0 * (1 - margin) and plan.binding == ("compute", "max_params")
    plan = plan_for_budget(EPOCH, 1e25, Caps(max_tokens=d0 * (1 - margin)))
    assert plan.tokens <= d0 * (1 - margin) and plan.binding == ("compute", "max_tokens")
    compute = closed_form.least_compute_for_loss(EPOCH, 2.0)
    n1, d1 = closed_form.optimal_allocation(EPOCH, compute)
    plan = plan_for_target_loss(EPOCH, 2.0, Caps(max_params=n1 * (1 - margin)))
    assert plan.params <= n1 * (1 - margin) and plan.binding == ("target_loss", "max_params")
    assert plan.loss == pytest.approx(2.0, rel=1e-12)
    plan = plan_for_target_loss(EPOCH, 2.0, Caps(max_tokens=d1 * (1 - margin)))
    assert plan.tokens <= d1 * (1 - margin) and plan.binding == ("target_loss", "max_tokens")


def test_both_caps_with_room_pick_the_nearer_one() -> None:
    """Caps on N and D that leave an interval of N: the optimum is the clamp into it."""
    n0, d0 = closed_form.optimal_allocation(EPOCH, 1e25)
    # N capped below the free optimum, D cap loose enough that the interval is non-empty.
    plan = plan_for_budget(EPOCH, 1e25, Caps(max_params=n0 / 2, max_tokens=d0 * 4))
    assert plan.params == pytest.approx(n0 / 2, rel=1e-12)
    assert plan.binding == ("compute", "max_params")
