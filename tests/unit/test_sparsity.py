"""Sparse pre-training plans against LAWS.md §6 and §11.9, numerical integrals of the schedule,
the closed-form Chinchilla optimum and brute-force grids over the final sparsity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw
from planner.planning.sparsity import (
    PruningSchedule,
    SparsityPlan,
    SparsityQuery,
    plan_sparsity,
)
from tests.conftest import HOFFMANN_ROUNDED

LAW = HOFFMANN_ROUNDED  # LAWS.md §11.2: E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28
COMPUTE = 1e23
JIN_MEAN = 0.625  # LAWS.md §6/§11.9: pruning 25% -> 75%


def cubic(t: np.ndarray, start: float, end: float, final: float) -> np.ndarray:
    """Zhu & Gupta's schedule written out again (LAWS.md §6), vectorised."""
    u = np.clip((t - start) / (end - start), 0.0, 1.0)
    return np.asarray(final * (1.0 - (1.0 - u) ** 3))


def chinchilla_optimum(law: ChinchillaLaw, compute: float) -> tuple[float, float]:
    """LAWS.md §11.2 from its formula: N = G (C/6)^a, D = C / (6 N)."""
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    n = g * (compute / 6) ** (law.beta / (law.alpha + law.beta))
    return n, compute / (6 * n)


def grid_over_sparsity(
    law: ChinchillaLaw,
    compute: float,
    final: float,
    prunable: float,
    sparse_flops: bool,
    mean: float = JIN_MEAN,
    s_max: float = 0.99,
) -> tuple[float, float]:
    """(s_f, loss) minimising the loss over 2e6 + 1 values of s_f in [0, s_max]."""
    s = np.linspace(0.0, s_max, 2_000_001)
    dense = final / (1 - prunable * s)
    average = dense * (1 - prunable * mean * s)
    tokens = compute / (6 * (average if sparse_flops else dense))
    losses = law.E + law.A * average**-law.alpha + law.B * tokens**-law.beta
    best = int(np.argmin(losses))
    return float(s[best]), float(losses[best])


def plan(compute: float = COMPUTE, **kwargs: Any) -> SparsityPlan:
    return plan_sparsity(SparsityQuery(LAW, compute, **kwargs))


def test_jin_schedule_mean_factor_is_five_eighths() -> None:
    """§11.9: prune 25% -> 75% gives mean sparsity 0.625 s_f."""
    assert PruningSchedule().mean_sparsity_factor() == pytest.approx(JIN_MEAN, rel=1e-15)


@pytest.mark.parametrize(("sparsity", "ratio"), [(0.5, 0.6875), (0.75, 0.53125), (0.9, 0.4375)])
def test_average_over_dense_matches_laws_11_9(sparsity: float, ratio: float) -> None:
    result = plan(final_sparsity=sparsity)
    assert result.average_params / result.dense_params == pytest.approx(ratio, rel=1e-12)
    assert result.final_params / result.dense_params == pytest.approx(1 - sparsity, rel=1e-12)


def test_laws_section_6_example() -> None:
    """§6: s_f = 0.75 gives N_avg = 0.531 N_dense and N_final = 0.471 N_avg (~2.1x fewer)."""
    result = plan(final_sparsity=0.75)
    assert result.average_params / result.dense_params == pytest.approx(0.531, abs=5e-4)
    assert result.final_params / result.average_params == pytest.approx(0.471, abs=5e-4)
    assert result.average_params / result.final_params == pytest.approx(2.1, abs=0.05)


@pytest.mark.parametrize(
    ("start", "end"), [(0.25, 0.75), (0.1, 0.9), (0.0, 1.0), (0.4, 0.6), (0.0, 0.3), (0.5, 1.0)]
)
def test_mean_factor_against_a_numerical_integral(start: float, end: float) -> None:
    t = np.linspace(0.0, 1.0, 1_000_001)
    integral = float(np.trapezoid(cubic(t, start, end, 1.0), t))
    assert PruningSchedule(start, end).mean_sparsity_factor() == pytest.approx(integral, abs=1e-9)


def test_average_params_is_the_integral_of_the_parameter_count() -> None:
    """N_avg = (1/T) ∫ N(t) dt with only the prunable 80% shrinking, for a non-default ramp."""
    schedule = PruningSchedule(0.1, 0.6)
    result = plan(final_sparsity=0.8, schedule=schedule, prunable_fraction=0.8)
    t = np.linspace(0.0, 1.0, 1_000_001)
    count = result.dense_params * (1 - 0.8 * cubic(t, 0.1, 0.6, 0.8))
    assert result.average_params == pytest.approx(float(np.trapezoid(count, t)), rel=1e-9)
    assert result.final_params == pytest.approx(result.dense_params * (1 - 0.8 * 0.8), rel=1e-12)


def test_schedule_points_by_hand() -> None:
    """s_f = 0.8 on 25% -> 75%: at t, u = (t - 0.25)/0.5 and s = 0.8 (1 - (1 - u)^3)."""
    result = plan(final_sparsity=0.8)
    by_hand = [
        (0.0, 0.0),
        (0.1, 0.0),
        (0.2, 0.0),
        (0.3, 0.8 * (1 - 0.9**3)),  # 0.2168
        (0.4, 0.8 * (1 - 0.7**3)),  # 0.5256
        (0.5, 0.8 * (1 - 0.5**3)),  # 0.7
        (0.6, 0.8 * (1 - 0.3**3)),  # 0.7784
        (0.7, 0.8 * (1 - 0.1**3)),  # 0.7992
        (0.8, 0.8),
        (0.9, 0.8),
        (1.0, 0.8),
    ]
    assert len(result.schedule) == len(by_hand)
    for (fraction, sparsity), (t, s) in zip(result.schedule, by_hand, strict=True):
        assert fraction == pytest.approx(t, abs=1e-15)
        assert sparsity == pytest.approx(s, rel=1e-12, abs=1e-15)
    schedule = PruningSchedule()
    assert schedule.sparsity_at(0.25, 0.8) == 0.0 and schedule.sparsity_at(0.75, 0.8) == 0.8


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.9])
def test_fixed_sparsity_is_the_chinchilla_optimum_in_average_params(sparsity: float) -> None:
    """With sparse FLOPs the law's N is N_avg on k N_avg D = C: N_avg = N_opt(C)."""
    result = plan(final_sparsity=sparsity)
    n, d = chinchilla_optimum(LAW, COMPUTE)
    assert result.average_params == pytest.approx(n, rel=1e-9)
    assert result.tokens == pytest.approx(d, rel=1e-9)
    # LAWS.md §11.2 table, C = 1e23.
    assert result.average_params == pytest.approx(1.45983e10, rel=5e-6)
    assert result.tokens == pytest.approx(1.14168e12, rel=5e-6)
    assert result.loss == pytest.approx(2.005010, abs=1e-6)
    assert result.flops == pytest.approx(COMPUTE, rel=1e-12)
    assert result.dense_params == pytest.approx(n / (1 - JIN_MEAN * sparsity), rel=1e-12)
    assert result.solver == "closed_form" and result.binding == ("compute", "final_sparsity")
    assert result.final_sparsity == sparsity


def test_fixed_sparsity_on_dense_kernels_sees_a_smaller_budget() -> None:
    """C = 6 N_dense D = 6 N_avg D / (1 - p m s_f): the optimum of budget C (1 - p m s_f)."""
    result = plan(final_sparsity=0.75, sparse_flops=False, prunable_fraction=0.8)
    factor = 1 - 0.8 * JIN_MEAN * 0.75
    n, d = chinchilla_optimum(LAW, COMPUTE * factor)
    assert result.average_params == pytest.approx(n, rel=1e-9)
    assert result.tokens == pytest.approx(d, rel=1e-9)
    assert result.dense_params == pytest.approx(n / factor, rel=1e-12)
    assert 6 * result.dense_params * result.tokens == pytest.approx(COMPUTE, rel=1e-12)
    assert result.flops == pytest.approx(COMPUTE, rel=1e-12)


@pytest.mark.parametrize(
    ("final", "prunable", "binding"),
    [
        (5e9, 1.0, ()),
        (1e9, 1.0, ()),
        (8e9, 0.8, ()),
        # R(0.99) = (1 - 0.8 x 0.625 x 0.99) / (1 - 0.8 x 0.99) = 2.43 < N_opt / 5e9 = 2.92.
        (5e9, 0.8, ("max_sparsity",)),
    ],
)
def test_fixed_size_with_sparse_flops_against_a_grid(
    final: float, prunable: float, binding: tuple[str, ...]
) -> None:
    result = plan(final_params=final, prunable_fraction=prunable)
    s, loss = grid_over_sparsity(LAW, COMPUTE, final, prunable, sparse_flops=True)
    assert result.final_sparsity == pytest.approx(s, abs=2e-6)
    assert result.loss == pytest.approx(loss, abs=1e-12)
    assert result.loss <= loss + 1e-15
    assert result.final_params == final
    assert result.binding == ("compute", "final_params", *binding)
    assert result.solver == "closed_form"
    n, _ = chinchilla_optimum(LAW, COMPUTE)
    if not binding:
        assert result.average_params == pytest.approx(n, rel=1e-9)
    assert result.average_params == pytest.approx(
        result.dense_params * (1 - prunable * JIN_MEAN * result.final_sparsity), rel=1e-12
    )
    assert result.final_params == pytest.approx(
        result.dense_params * (1 - prunable * result.final_sparsity), rel=1e-12
    )
    assert result.flops == pytest.approx(COMPUTE, rel=1e-12)


@pytest.mark.parametrize(
    ("final", "prunable", "compute", "binding"),
    [
        (1e9, 1.0, 1e23, ()),
        (1e8, 1.0, 1e21, ()),
        (3e9, 0.8, 1e23, ()),  # s = 0 is a local minimum here too; the scan finds 0.92
        (3.5e9, 0.8, 1e23, ("dense",)),
        (5e9, 1.0, 1e23, ("dense",)),
        (1e9, 0.8, 1e23, ("max_sparsity",)),
    ],
)
def test_fixed_size_on_dense_kernels_against_a_grid(
    final: float, prunable: float, compute: float, binding: tuple[str, ...]
) -> None:
    result = plan(
        final_params=final, prunable_fraction=prunable, sparse_flops=False, compute=compute
    )
    s, loss = grid_over_sparsity(LAW, compute, final, prunable, sparse_flops=False)
    assert result.final_sparsity == pytest.approx(s, abs=2e-5)
    assert result.loss == pytest.approx(loss, abs=1e-12)
    assert result.loss <= loss + 1e-15
    assert result.binding == ("compute", "final_params", *binding)
    assert result.solver == "scalar/bounded"
    assert 6 * result.dense_params * result.tokens == pytest.approx(compute, rel=1e-12)


def test_dense_same_size_is_never_better_when_pruning_pays() -> None:
    """N_opt(1e23) = 1.46e10 > N_final: the dense model of the deployed size on the same
    compute, D = C / (6 N_final), reaches a higher loss."""
    n, _ = chinchilla_optimum(LAW, COMPUTE)
    for final in (1e9, 5e9, 1e10):
        assert n > final
        for sparse_flops in (True, False):
            result = plan(final_params=final, sparse_flops=sparse_flops)
            same = result.dense_same_size
            assert same.params == final
            assert same.tokens == pytest.approx(COMPUTE / (6 * final), rel=1e-12)
            assert same.loss == pytest.approx(LAW.loss(final, COMPUTE / (6 * final)), rel=1e-12)
            assert same.loss >= result.loss
            assert result.loss_gap == pytest.approx(same.loss - result.loss, rel=1e-12)
        assert plan(final_params=final).loss_gap > 0


def test_deployed_size_above_the_optimum_is_dense() -> None:
    n, d = chinchilla_optimum(LAW, COMPUTE)
    result = plan(final_params=2e10)
    assert n < 2e10
    assert result.final_sparsity == 0.0 and "dense" in result.binding
    assert result.dense_params == result.average_params == result.final_params == 2e10
    assert all(s == 0.0 for _, s in result.schedule)
    assert result.loss == pytest.approx(result.dense_same_size.loss, rel=1e-15)
    assert result.loss_gap == 0.0
    assert any("no larger than final_params" in note for note in result.notes)
    assert f"{LAW.loss(n, d):.6g}" in result.notes[0]


def test_other_schedules_carry_a_note() -> None:
    assert plan(final_sparsity=0.5).notes == ()
    moved = plan(final_sparsity=0.5, schedule=PruningSchedule(0.1, 0.9))
    assert any("extrapolates" in note for note in moved.notes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"compute": math.nan, "final_sparsity": 0.5}, "budget.flops"),
        ({"compute": math.inf, "final_sparsity": 0.5}, "budget.flops"),
        ({"compute": -1e23, "final_sparsity": 0.5}, "budget.flops"),
        ({"final_sparsity": 1.0}, "final_sparsity"),
        ({"final_sparsity": -0.1}, "final_sparsity"),
        ({"final_sparsity": math.nan}, "final_sparsity"),
        ({"final_params": -5e9}, "final_params"),
        ({"final_params": math.inf}, "final_params"),
        ({"final_sparsity": 0.5, "final_params": 5e9}, "target"),
        ({}, "target"),
        ({"final_sparsity": 0.5, "schedule": PruningSchedule(0.75, 0.25)}, "prune_end"),
        ({"final_sparsity": 0.5, "schedule": PruningSchedule(0.5, 0.5)}, "prune_end"),
        ({"final_sparsity": 0.5, "schedule": PruningSchedule(-0.1, 0.5)}, "prune_start"),
        ({"final_sparsity": 0.5, "schedule": PruningSchedule(0.25, 1.5)}, "prune_end"),
        ({"final_sparsity": 0.5, "schedule": PruningSchedule(math.nan, 0.5)}, "prune_start"),
        ({"final_sparsity": 0.5, "prunable_fraction": 0.0}, "prunable_fraction"),
        ({"final_sparsity": 0.5, "prunable_fraction": 1.5}, "prunable_fraction"),
        ({"final_sparsity": 0.5, "flops_per_param_token": 0.0}, "flops_per_param_token"),
        ({"final_params": 5e9, "max_sparsity": 1.0}, "max_sparsity"),
    ],
)
def test_bad_input(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan(**kwargs)
    assert caught.value.field == field


def test_infeasible_requests() -> None:
    # 6 x 1e23 FLOPs per token: the budget buys a sixth of a token of even the dense model.
    with pytest.raises(Infeasible, match="one token") as caught:
        plan(final_params=1e23)
    assert caught.value.field == "final_params"
    with pytest.raises(Infeasible, match="less than one"):
        plan(final_sparsity=0.5, compute=10.0)
    with pytest.raises(Infeasible, match="floating-point range"):
        plan(final_params=1e-300, compute=1e308)
