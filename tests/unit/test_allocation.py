"""Splitting one budget across jobs, against independent computations: a closed-form
water-filling written here from L*(C) = E + K (C/k)^-gamma, brute-force grids over the split,
finite differences of the optimal objective, and the single-job compute-optimal planner."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw
from planner.planning.allocation import (
    Allocation,
    AllocationQuery,
    Job,
    allocate,
    warm_up,
)
from planner.planning.allocation_gp import solve_gp
from planner.planning.compute_optimal import Caps, plan_for_budget
from tests.conftest import EPOCH, HOFFMANN_ROUNDED

HOFF = HOFFMANN_ROUNDED
Value = Callable[[np.ndarray], np.ndarray]


def gamma(law: ChinchillaLaw) -> float:
    return law.alpha * law.beta / (law.alpha + law.beta)


def reducible_coefficient(law: ChinchillaLaw) -> float:
    """K with L*(C) - E = K (C/k)^-gamma: A N^-alpha + B D^-beta at the optimum N = G (C/k)^a."""
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    return float(law.A * g**-law.alpha + law.B * g**law.beta)


def best_loss(law: ChinchillaLaw, compute: np.ndarray, k: float = 6.0) -> np.ndarray:
    return law.E + reducible_coefficient(law) * (compute / k) ** -gamma(law)


def best_loss_capped(law: ChinchillaLaw, compute: np.ndarray, max_params: float) -> np.ndarray:
    """LAWS.md §1.7 (c): the objective is convex along the iso-FLOP line, so N = min(N_opt, cap)."""
    a = law.beta / (law.alpha + law.beta)
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    params = np.minimum(g * (compute / 6) ** a, max_params)
    return np.asarray(
        law.E + law.A * params**-law.alpha + law.B * (compute / (6 * params)) ** -law.beta
    )


def water_fill(
    laws: Sequence[ChinchillaLaw], weights: Sequence[float], total: float, ks: Sequence[float]
) -> tuple[list[float], float]:
    """Unbounded jobs: w_i gamma_i K_i / k_i (C_i/k_i)^-(1 + gamma_i) = mu, sum C_i = total.

    Bisection on ln mu (its own loop, not the module's brentq)."""

    def split(log_mu: float) -> list[float]:
        mu = math.exp(log_mu)
        return [
            k * (mu * k / (w * gamma(law) * reducible_coefficient(law))) ** (-1 / (1 + gamma(law)))
            for law, w, k in zip(laws, weights, ks, strict=True)
        ]

    low, high = -200.0, 0.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if sum(split(middle)) > total else (low, middle)
    return split(low), math.exp(low)


def grid_split(first: Value, second: Value, total: float) -> float:
    """The first job's compute minimising first(C1) + second(total - C1), by refining grids."""
    low, high = 1e-6 * total, (1 - 1e-6) * total
    for _ in range(6):
        c1 = np.linspace(low, high, 20_001)
        objective = first(c1) + second(total - c1)
        best = int(np.argmin(objective))
        step = c1[1] - c1[0]
        low, high = c1[best] - 2 * step, c1[best] + 2 * step
    return float(c1[best])


def run(jobs: Sequence[Job], compute: float) -> Allocation:
    return allocate(AllocationQuery(tuple(jobs), compute))


def finite_difference(jobs: Sequence[Job], compute: float, h: float = 1e-4) -> float:
    """-d(optimal objective)/dC by re-solving at C (1 -/+ h)."""
    down, up = run(jobs, compute * (1 - h)), run(jobs, compute * (1 + h))
    return (down.objective - up.objective) / (2 * h * compute)


def test_two_identical_jobs_reproduce_laws_11_2() -> None:
    """Two equal Hoffmann jobs on 2e23 get 1e23 each: N 1.45983e10, L 2.005010 (LAWS §11.2)."""
    result = run([Job("a", HOFF), Job("b", HOFF)], 2e23)
    for job in result.jobs:
        assert job.flops == pytest.approx(1e23, rel=1e-9)
        assert job.params == pytest.approx(1.45983e10, rel=5e-6)
        assert job.loss == pytest.approx(2.005010, abs=1e-6)
        assert job.binding == ()
    assert result.budget_binding and result.solver == "gp/CLARABEL"


@pytest.mark.parametrize("compute", [1e21, 3e22, 1e24])
def test_two_jobs_match_water_filling_and_grid(compute: float) -> None:
    jobs = [Job("hoffmann", HOFF, weight=1.0), Job("epoch", EPOCH, weight=2.5)]
    result = run(jobs, compute)
    expected, mu = water_fill([HOFF, EPOCH], [1.0, 2.5], compute, [6.0, 6.0])
    assert [j.flops for j in result.jobs] == pytest.approx(expected, rel=1e-8)
    assert result.marginal_value == pytest.approx(mu, rel=1e-8)
    grid = grid_split(
        lambda c: 1.0 * best_loss(HOFF, c), lambda c: 2.5 * best_loss(EPOCH, c), compute
    )
    assert result.jobs[0].flops == pytest.approx(grid, rel=1e-5)
    assert math.fsum(j.flops for j in result.jobs) == pytest.approx(compute, rel=1e-12)
    # Each job is compute-optimal for its own share.
    for job, law in zip(result.jobs, (HOFF, EPOCH), strict=True):
        plan = plan_for_budget(law, job.flops)
        assert (job.params, job.tokens) == pytest.approx((plan.params, plan.tokens), rel=1e-12)
    assert result.objective == pytest.approx(
        1.0 * result.jobs[0].loss + 2.5 * result.jobs[1].loss, rel=1e-14
    )


def test_three_jobs_with_mixed_flops_per_token_match_water_filling() -> None:
    laws, weights, ks = [HOFF, EPOCH, HOFF], [1.0, 0.3, 4.0], [6.0, 6.0, 8.0]
    jobs = [
        Job(f"j{i}", law, weight=w, flops_per_param_token=k)
        for i, (law, w, k) in enumerate(zip(laws, weights, ks, strict=True))
    ]
    result = run(jobs, 5e23)
    expected, mu = water_fill(laws, weights, 5e23, ks)
    assert [j.flops for j in result.jobs] == pytest.approx(expected, rel=1e-8)
    assert result.marginal_value == pytest.approx(mu, rel=1e-8)
    third = result.jobs[2]
    assert 8 * third.params * third.tokens == pytest.approx(third.flops, rel=1e-12)
    # Job order does not change anyone's share.
    reordered = run(jobs[::-1], 5e23)
    assert [j.flops for j in reordered.jobs[::-1]] == pytest.approx(expected, rel=1e-8)


def test_marginal_values_equal_the_dual_and_the_finite_difference() -> None:
    jobs = [Job("a", HOFF), Job("b", EPOCH, weight=2.0), Job("c", HOFF, weight=0.5)]
    result = run(jobs, 1e23)
    fd = finite_difference(jobs, 1e23)
    mu = result.marginal_value
    assert mu == pytest.approx(fd, rel=1e-4)
    for job in result.jobs:
        assert job.marginal_value == pytest.approx(mu, rel=1e-4)
    # Each job's own marginal from the closed form dL*/dC = -gamma K (C/k)^-gamma / C.
    for job, law, w in zip(result.jobs, (HOFF, EPOCH, HOFF), (1.0, 2.0, 0.5), strict=True):
        reducible = float(best_loss(law, np.array(job.flops))) - law.E
        assert job.marginal_value == pytest.approx(w * gamma(law) * reducible / job.flops, 1e-9)
    # The solver's own dual of the budget constraint, before the exact finish.
    raw = solve_gp(tuple(jobs), 1e23)
    assert raw.marginal_value == pytest.approx(fd, rel=1e-4)
    assert list(raw.flops) == pytest.approx([j.flops for j in result.jobs], rel=1e-4)


def test_pinned_jobs_value_compute_differently() -> None:
    """A job held below its free share (max_flops) would gain more than mu from one more FLOP;
    one held above it (min_flops) less."""
    free = run([Job("a", HOFF), Job("b", EPOCH), Job("c", HOFF, weight=2.0)], 1e23)
    cap, floor = 0.5 * free.jobs[0].flops, 2.0 * free.jobs[1].flops
    jobs = [
        Job("a", HOFF, max_flops=cap),
        Job("b", EPOCH, min_flops=floor),
        Job("c", HOFF, weight=2.0),
    ]
    result = run(jobs, 1e23)
    a, b, c = result.jobs
    mu = result.marginal_value
    assert a.flops == cap and a.binding == ("max_flops",)
    assert b.flops == floor and b.binding == ("min_flops",)
    assert c.binding == () and c.flops == pytest.approx(1e23 - cap - floor, rel=1e-12)
    assert a.marginal_value > 1.1 * mu
    assert b.marginal_value < mu / 1.1
    assert c.marginal_value == pytest.approx(mu, rel=1e-9)
    assert mu == pytest.approx(finite_difference(jobs, 1e23), rel=1e-4)
    # The only free job takes the rest; mu is its own closed-form marginal there.
    assert mu == pytest.approx(
        2.0 * gamma(HOFF) * (float(best_loss(HOFF, np.array(c.flops))) - HOFF.E) / c.flops, 1e-9
    )


def test_params_cap_moves_compute_to_the_other_job() -> None:
    compute = 1e24
    free = run([Job("a", HOFF), Job("b", EPOCH)], compute)
    cap = 0.3 * free.jobs[1].params
    jobs = [Job("a", HOFF), Job("b", EPOCH, max_params=cap)]
    capped = run(jobs, compute)
    a, b = capped.jobs
    assert b.params == cap and b.binding == ("max_params",)
    # With N fixed, b's extra compute only buys tokens: it is worth less, so a gets more.
    assert b.flops < free.jobs[1].flops and a.flops > free.jobs[0].flops
    assert capped.marginal_value < free.marginal_value
    assert capped.objective > free.objective
    grid = grid_split(
        lambda c: best_loss(HOFF, c), lambda c: best_loss_capped(EPOCH, c, cap), compute
    )
    assert a.flops == pytest.approx(grid, rel=1e-5)
    # The capped job's marginal, along its face, still equals mu.
    assert b.marginal_value == pytest.approx(capped.marginal_value, rel=1e-9)
    assert capped.marginal_value == pytest.approx(finite_difference(jobs, compute), rel=1e-4)
    assert b.tokens == pytest.approx(b.flops / (6 * cap), rel=1e-12)


def test_tokens_cap_binds_and_matches_single_job_planner() -> None:
    result = run([Job("a", HOFF), Job("b", EPOCH, weight=3.0, max_tokens=1e11)], 1e23)
    b = result.jobs[1]
    assert b.tokens == 1e11 and b.binding == ("max_tokens",)
    plan = plan_for_budget(EPOCH, b.flops, Caps(max_tokens=1e11))
    assert b.params == pytest.approx(plan.params, rel=1e-12)
    assert b.marginal_value == pytest.approx(result.marginal_value, rel=1e-9)


@pytest.mark.parametrize("law", [HOFF, EPOCH])
@pytest.mark.parametrize("caps", [Caps(), Caps(max_params=5e9), Caps(max_tokens=3e11)])
def test_single_job_is_the_compute_optimal_plan(law: ChinchillaLaw, caps: Caps) -> None:
    jobs = [Job("only", law, max_params=caps.max_params, max_tokens=caps.max_tokens)]
    result = run(jobs, 1e23)
    plan = plan_for_budget(law, 1e23, caps)
    (job,) = result.jobs
    assert job.flops == 1e23
    assert (job.params, job.tokens, job.loss) == pytest.approx(
        (plan.params, plan.tokens, plan.loss), rel=1e-12
    )
    assert result.marginal_value == pytest.approx(finite_difference(jobs, 1e23), rel=1e-4)


def test_budget_left_over_when_every_job_is_capped() -> None:
    jobs = [
        Job("a", HOFF, max_params=1e9, max_tokens=2e10),
        Job("b", EPOCH, max_flops=1e20),
    ]
    result = run(jobs, 1e22)
    a, b = result.jobs
    assert not result.budget_binding and result.marginal_value == 0.0
    assert (a.params, a.tokens, a.flops) == (1e9, 2e10, 6 * 1e9 * 2e10)
    assert a.binding == ("max_params", "max_tokens")
    assert b.flops == 1e20 and b.binding == ("max_flops",)
    assert a.marginal_value > 0 and b.marginal_value > 0


def test_max_flops_below_the_caps_corner() -> None:
    """Both caps present, but max_flops binds first: the job is on its budget line."""
    job = Job("a", HOFF, max_flops=1e21, max_params=1e10, max_tokens=1e12)
    (a, _) = run([job, Job("b", EPOCH)], 1e23).jobs
    assert a.flops == 1e21 and a.binding == ("max_flops",)
    assert 6 * a.params * a.tokens == pytest.approx(1e21, rel=1e-12)
    plan = plan_for_budget(HOFF, 1e21)
    assert (a.params, a.tokens) == pytest.approx((plan.params, plan.tokens), rel=1e-12)


def test_weights_twelve_decades_apart() -> None:
    """The light job is below the solver's resolution; the exact finish still places it."""
    weights = [1e6, 1e-6]
    result = run([Job("heavy", HOFF, weight=1e6), Job("light", EPOCH, weight=1e-6)], 1e22)
    expected, mu = water_fill([HOFF, EPOCH], weights, 1e22, [6.0, 6.0])
    assert [j.flops for j in result.jobs] == pytest.approx(expected, rel=1e-8)
    assert result.marginal_value == pytest.approx(mu, rel=1e-8)


def test_every_job_at_its_minimum() -> None:
    jobs = [Job("a", HOFF, min_flops=4e22), Job("b", EPOCH, min_flops=6e22)]
    result = run(jobs, 1e23)
    assert [j.flops for j in result.jobs] == [4e22, 6e22]
    assert all(j.binding == ("min_flops",) for j in result.jobs)
    # One more FLOP goes where it is worth most.
    assert result.marginal_value == max(j.marginal_value for j in result.jobs)


@pytest.mark.parametrize(
    ("jobs", "field"),
    [
        ([], "jobs"),
        ([Job("a", HOFF, weight=math.nan)], "jobs[0].weight"),
        ([Job("a", HOFF), Job("b", HOFF, weight=math.inf)], "jobs[1].weight"),
        ([Job("a", HOFF), Job("b", HOFF, weight=-1.0)], "jobs[1].weight"),
        ([Job("a", HOFF), Job("b", HOFF, weight=0.0)], "jobs[1].weight"),
        ([Job("a", HOFF, min_flops=2e22, max_flops=1e22)], "jobs[0].min_flops"),
        ([Job("a", HOFF, min_flops=-1.0)], "jobs[0].min_flops"),
        ([Job("a", HOFF, max_params=0.0)], "jobs[0].max_params"),
        ([Job("a", HOFF), Job("a", EPOCH)], "jobs[1].name"),
        ([Job("", HOFF)], "jobs[0].name"),
        ([Job("a", HOFF, flops_per_param_token=math.nan)], "jobs[0].flops_per_param_token"),
    ],
)
def test_bad_input(jobs: list[Job], field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        run(jobs, 1e23)
    assert error.value.field == field


@pytest.mark.parametrize("compute", [0.0, -1.0, math.nan, math.inf])
def test_bad_compute(compute: float) -> None:
    with pytest.raises(InvalidInput) as error:
        run([Job("a", HOFF)], compute)
    assert error.value.field == "budget.flops"


def test_infeasible_requests_name_the_numbers() -> None:
    with pytest.raises(
        Infeasible, match=r"minimums add up to 1\.2e\+23 FLOPs, more than the total 1e\+23"
    ):
        run([Job("a", HOFF, min_flops=7e22), Job("b", EPOCH, min_flops=5e22)], 1e23)
    with pytest.raises(
        Infeasible, match=r"allow at most 6 N D = 6e\+20 FLOPs.*min_flops 1e\+21"
    ) as e:
        run([Job("a", HOFF, min_flops=1e21, max_params=1e9, max_tokens=1e11)], 1e23)
    assert e.value.field == "jobs[0].min_flops"


def test_warm_up_compiles_and_solves() -> None:
    warm_up()


def test_water_filling_alone_matches_the_gp_checked_answer() -> None:
    """The path ensemble bands use (no GP) gives the same split, to rounding."""
    jobs = (
        Job("a", HOFFMANN_ROUNDED, weight=1.0),
        Job("b", EPOCH, weight=2.0, max_params=2e10),
        Job("c", HOFFMANN_ROUNDED, weight=0.5, min_flops=3e23),
    )
    query = AllocationQuery(jobs, 1e24)
    checked, alone = allocate(query), allocate(query, check_with_gp=False)
    assert [j.flops for j in alone.jobs] == pytest.approx([j.flops for j in checked.jobs], rel=1e-9)
    assert alone.marginal_value == pytest.approx(checked.marginal_value, rel=1e-9)
    assert alone.solver == "water_filling" and checked.solver.startswith("gp/")
