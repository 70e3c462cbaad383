"""Schedules chosen by a loss-curve law (planner.curves.optimize).

Independent references: the laws' own exact predictions (finite differences for the gradients),
a brute force over every WSD decay start, a cvxpy solve of the convex LR-annealing problem
(LAWS.md §8.2), and Luo et al.'s published 25M curves (shared data lr_schedules/mpl_25M, from
thu-yao-01-luo/MultiPowerLaw @8da9f19): the paper finds the loss-optimal schedule looks like WSD,
a long stable phase then a decay ending near the floor, beating cosine.
"""

from __future__ import annotations

from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

from planner.curves import AnnealingLaw, MultiPowerLaw, schedules
from planner.curves.optimize import (
    ScheduleProblem,
    annealing_gradient,
    annealing_optimum,
    best_decay_fraction,
    final_loss,
    knot_optimum,
    multi_power_gradient,
    optimal_schedule,
)
from planner.curves.schedules import DECAY_SHAPES
from planner.errors import InvalidInput
from tests.unit.test_multi_power import FULL, short_schedule, slow_reference
from tests.unit.test_schedules import read_curve

MPL_25M = MultiPowerLaw(*FULL["25M"])
# The LR-annealing law fitted (planner.curves.fit_lr_annealing, lambda 0.999) to the 25M training
# curves constant_24000, cosine_24000 and wsdcon_9, rounded: realistic magnitudes.
ANNEALING_25M = AnnealingLaw(L0=3.068, A=0.4913, alpha=0.5715, C=0.3977, decay=0.999)
PUBLISHED_RUN = ScheduleProblem(24_000, 3e-4, 3e-5, 2160)


def central_difference(loss: object, lrs: np.ndarray, step: int, h: float) -> float:
    up, down = lrs.copy(), lrs.copy()
    up[step] += h
    down[step] -= h
    return (final_loss(loss, up) - final_loss(loss, down)) / (2 * h)  # type: ignore[arg-type]


def test_multi_power_gradient_matches_finite_differences() -> None:
    """Warm-up, cosine, a jump down, a re-warm-up, zero rates and a restart: value against the
    term-by-term formula, slope against the law's exact prediction."""
    lrs = short_schedule()
    value, gradient = multi_power_gradient(MPL_25M, lrs)
    assert value == pytest.approx(slow_reference(MPL_25M, lrs.tolist(), lrs.size - 1), rel=1e-12)
    for step in (1, 20, 39, 40, 41, 250, 399, 400, 401, 450, 550, 599, 680, 699):
        expected = central_difference(MPL_25M, lrs, step, 1e-9)
        assert gradient[step] == pytest.approx(expected, rel=2e-5, abs=1e-6), step


def test_annealing_gradient_matches_finite_differences() -> None:
    lrs = schedules.cosine(3000, 3e-4, 3e-5, warmup_steps=200)
    value, gradient = annealing_gradient(ANNEALING_25M, lrs)
    assert value == pytest.approx(final_loss(ANNEALING_25M, lrs), rel=1e-12)
    for step in (1, 150, 199, 200, 1500, 2998, 2999):
        expected = central_difference(ANNEALING_25M, lrs, step, 1e-8)
        assert gradient[step] == pytest.approx(expected, rel=1e-6), step


def test_best_decay_fraction_matches_every_decay_start() -> None:
    """A 600-step run: the search finds what trying every decay start finds."""
    problem = ScheduleProblem(600, 3e-4, 3e-5, 50)
    for shape in ("linear", "exponential"):
        every = [
            final_loss(MPL_25M, schedules.wsd(600, 3e-4, 3e-5, 50, decay_start=s, shape=shape))
            for s in range(50, 601)
        ]
        choice = best_decay_fraction(MPL_25M, problem, shape)  # type: ignore[arg-type]
        assert choice.final_loss == pytest.approx(min(every), abs=1e-9)
        start = 600 - round(choice.decay_fraction * 600)
        assert every[start - 50] == pytest.approx(min(every), abs=1e-9)
        assert choice.cosine_final_loss == pytest.approx(
            final_loss(MPL_25M, schedules.cosine(600, 3e-4, 3e-5, 50)), rel=1e-14
        )


def annealing_by_cvxpy(law: AnnealingLaw, problem: ScheduleProblem) -> float:
    """The convex problem of LAWS.md §8.2 as written: S1 and S2 linear in the free rates."""
    total, warmup = problem.total_steps, problem.warmup_steps
    warm = np.linspace(0.0, problem.peak_lr, warmup)
    free = cp.Variable(total - warmup)
    lrs = cp.hstack([warm, free])
    s1 = cp.sum(lrs)
    # S2(T-1) = sum_j (eta_{j-1} - eta_j) (1 - lambda^(T-j)) / (1 - lambda), j = 1..T-1.
    j = np.arange(1, total)
    weight = (1 - law.decay ** (total - j)) / (1 - law.decay)
    s2 = weight @ (lrs[:-1] - lrs[1:])
    scale = 1e3  # keep the solver's tolerances meaningful for a loss that moves by ~1e-2
    objective = cp.Minimize(scale * (law.A * cp.power(s1, -law.alpha, approx=False) - law.C * s2))
    constraints = [
        free >= problem.floor_lr,
        free <= problem.peak_lr,
        free[1:] <= free[:-1],
    ]
    cp.Problem(objective, constraints).solve()
    return float(law.L0 + objective.value / scale)


def test_convex_annealing_solve_agrees_with_cvxpy_and_the_general_solver() -> None:
    problem = ScheduleProblem(3000, 3e-4, 3e-5, 200)
    exact = annealing_optimum(ANNEALING_25M, problem)
    assert exact.solver == "convex_threshold"
    assert exact.final_loss == pytest.approx(annealing_by_cvxpy(ANNEALING_25M, problem), abs=2e-6)
    general = knot_optimum(ANNEALING_25M, problem)
    assert general.final_loss >= exact.final_loss - 1e-12  # the convex optimum is global
    assert general.final_loss - exact.final_loss < 2e-5
    # Peak, then floor: at most one step in between.
    free = exact.lrs[200:]
    between = (free > problem.floor_lr) & (free < problem.peak_lr)
    assert between.sum() <= 1 and np.all(np.diff(free) <= 0)


def test_convex_annealing_solve_on_the_published_run() -> None:
    exact = optimal_schedule(ANNEALING_25M, PUBLISHED_RUN)
    general = knot_optimum(ANNEALING_25M, PUBLISHED_RUN)
    assert 0 <= general.final_loss - exact.final_loss < 2e-5
    assert exact.gain_over_cosine > 0


def observed_final(shared_data: Path, name: str) -> float:
    """Mean of the last three checkpoints: one checkpoint's noise is ~1e-3."""
    _, _, loss = read_curve(shared_data, "25M", name)
    return float(loss[-3:].mean())


def test_optimal_schedule_on_the_published_25M_law(shared_data: Path) -> None:
    """Luo et al.'s finding: the loss-optimal schedule is WSD-like. At their 25M parameters it
    keeps >= 90% of the peak for the first half, decays to near the floor at the end, is no
    worse than the best WSD of any decay shape nor cosine, and beats cosine by at least what
    their WSD runs did over their cosine run (observed)."""
    found = optimal_schedule(MPL_25M, PUBLISHED_RUN)
    free = found.lrs[PUBLISHED_RUN.warmup_steps :]
    assert np.all(np.diff(free) <= 0)
    assert free.min() >= PUBLISHED_RUN.floor_lr and free.max() <= PUBLISHED_RUN.peak_lr
    half = PUBLISHED_RUN.total_steps // 2 - PUBLISHED_RUN.warmup_steps
    assert free[:half].min() >= 0.9 * PUBLISHED_RUN.peak_lr
    assert free[-1] <= 1.5 * PUBLISHED_RUN.floor_lr
    cosine = final_loss(MPL_25M, PUBLISHED_RUN.cosine())
    assert found.cosine_final_loss == pytest.approx(cosine, rel=1e-14)
    for shape in DECAY_SHAPES:
        wsd = best_decay_fraction(MPL_25M, PUBLISHED_RUN, shape)  # type: ignore[arg-type]
        assert found.final_loss <= wsd.final_loss
    observed_gain = observed_final(shared_data, "cosine_24000") - min(
        observed_final(shared_data, name) for name in ("wsd_20000_24000", "wsdld_20000_24000")
    )
    assert observed_gain > 0.02
    assert found.gain_over_cosine >= observed_gain - 2e-3


def test_without_a_loss_drop_the_peak_throughout_is_best() -> None:
    """B = 0 leaves L0 + A S^-alpha, which falls with every rate: no decay at all wins."""
    law = MultiPowerLaw(3.0, 0.5, 0.5, 0.0, 2.0, 0.6, 0.6)
    problem = ScheduleProblem(5000, 3e-4, 3e-5, 100)
    assert best_decay_fraction(law, problem).decay_fraction < 1e-3
    found = optimal_schedule(law, problem)
    np.testing.assert_allclose(found.lrs[100:], 3e-4, rtol=1e-9)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((0, 3e-4, 3e-5, 0), "total_steps"),
        ((2_000_000, 3e-4, 3e-5, 0), "total_steps"),
        ((1000, 0.0, 0.0, 0), "peak_lr"),
        ((1000, float("nan"), 0.0, 0), "peak_lr"),
        ((1000, 3e-4, 3e-4, 0), "floor_lr"),
        ((1000, 3e-4, -1e-5, 0), "floor_lr"),
        ((1000, 3e-4, 3e-5, 1000), "warmup_steps"),
        ((1000, 3e-4, 3e-5, -1), "warmup_steps"),
        ((1000.5, 3e-4, 3e-5, 0), "total_steps"),
    ],
)
def test_bad_problems_name_the_field(arguments: tuple[float, ...], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ScheduleProblem(*arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
