"""The task-law fit job (planner.fitting.task_jobs), the stored form (planner.tasks.stored) and
over-training for a task-loss target (planner.tasks.ratio_plan).

The job must give the domain fit's law (the one tests/unit/test_task_laws.py holds to the
paper) and a bootstrap whose rows are whole refits on resampled runs; ratio plans are checked
against the law written out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.fitting.task_jobs import TaskFitJob, run_resamples
from planner.forms import form_kind, law_form, law_mapping, parse_any_law
from planner.laws import ChinchillaLaw
from planner.tasks import TASKS, SigmoidLink, fit_task_scaling_law
from planner.tasks.ratio_plan import plan_at_ratio
from planner.tasks.stored import TASK_LAW_NAMES, TaskLinkLaw, ensemble_accuracy
from tests.unit import olmo_ladder_data as data
from tests.unit.test_task_laws import CHAINED_13B, TARGET_13B


@pytest.fixture(scope="module")
def job(shared_data: Path) -> TaskFitJob:
    runs = data.training_runs(shared_data, TASKS["piqa_val"])
    return TaskFitJob(tuple(runs), chance=0.5, skip_fraction=0.1, window=5).validated()


def test_job_fit_is_the_domain_fit(job: TaskFitJob) -> None:
    law = job.fit()
    assert law == fit_task_scaling_law(list(job.runs), chance=0.5)
    # and so the authors' chained 13B-5T PIQA prediction
    assert law.predict(*TARGET_13B).accuracy == pytest.approx(CHAINED_13B["piqa_val"][0], abs=1e-4)


def test_bootstrap_rows_are_refits_on_resampled_runs(job: TaskFitJob) -> None:
    samples = run_resamples(len(job.runs), 3, seed=7)
    rows = job.bootstrap(samples)
    assert rows.shape == (3, len(TASK_LAW_NAMES))
    # Row 0 is the fit of exactly those runs, step 1 and step 2 together (paired).
    again = fit_task_scaling_law([job.runs[i] for i in samples[0]], chance=0.5)
    expected = TaskLinkLaw.from_fit("piqa_val", again).to_mapping()
    assert rows[0].tolist() == [expected[name] for name in TASK_LAW_NAMES]


def test_resamples_are_fixed_by_the_seed() -> None:
    first = run_resamples(16, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, run_resamples(16, 5, 3), strict=True))
    assert not np.array_equal(first[0], run_resamples(16, 5, 4)[0])
    assert all(s.min() >= 0 and s.max() < 16 and s.size == 16 for s in first)


def test_a_failed_resample_is_a_row_of_nan(job: TaskFitJob) -> None:
    # Every draw the same run: one (N, D) point, step 1 cannot fit.
    rows = job.bootstrap([np.zeros(16, dtype=np.int64)])
    assert np.isnan(rows).all()


def test_job_needs_five_runs(job: TaskFitJob) -> None:
    with pytest.raises(InvalidInput, match="at least 5 runs"):
        TaskFitJob(job.runs[:4], 0.5, 0.1, 5).validated()


# --- the stored form -------------------------------------------------------------------------

VALUES = {
    "E": 0.5,
    "A": 40.0,
    "B": 100.0,
    "alpha": 0.25,
    "beta": 0.25,
    "a": -0.75,
    "b": 1.0,
    "k": 5.0,
    "x0": 0.6,
}


def test_task_form_is_a_kind_of_its_own_and_round_trips() -> None:
    assert form_kind("task_link:mmlu") == "task"
    law = parse_any_law("task_link:mmlu", VALUES)
    assert isinstance(law, TaskLinkLaw) and law.task == "mmlu"
    assert law_form(law) == "task_link:mmlu"
    assert law_mapping(law) == VALUES


@pytest.mark.parametrize(
    ("form", "values", "field"),
    [
        ("task_link:", VALUES, "form"),
        ("task_link:MMLU", VALUES, "form"),
        ("task_link:" + "x" * 31, VALUES, "form"),  # the store's form column holds 40
        ("task_link:mmlu", {**VALUES, "a": 0.2}, "parameters.a"),  # a must be < 0
        ("task_link:mmlu", {**VALUES, "A": -1.0}, "parameters.A"),
        ("task_link:mmlu", {k: v for k, v in VALUES.items() if k != "x0"}, "parameters.x0"),
    ],
)
def test_bad_task_laws_are_refused(form: str, values: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_any_law(form, values)
    assert caught.value.field == field


def test_ensemble_rows_evaluate_as_the_written_out_chain() -> None:
    rows = np.array(
        [[VALUES[n] for n in TASK_LAW_NAMES], [0.4, 30.0, 90.0, 0.3, 0.2, -0.7, 0.95, 4.0, 0.7]]
    )
    n, d = 1e9, 2e10
    loss, accuracy = ensemble_accuracy(rows, n, d)
    for row, got_loss, got_acc in zip(rows, loss, accuracy, strict=True):
        e, a_big, b_big, alpha, beta, a, b, k, x0 = row
        hand = e + a_big / n**alpha + b_big / d**beta
        assert got_loss == pytest.approx(hand, rel=1e-14)
        assert got_acc == pytest.approx(a / (1 + math.exp(-k * (hand - x0))) + b, rel=1e-14)


# --- over-training on the step-1 law ---------------------------------------------------------

LAW = ChinchillaLaw(E=0.45, A=38.0, B=100.0, alpha=0.23, beta=0.24)


def test_ratio_plan_at_a_multiplier_reaches_the_target_on_that_line() -> None:
    plan = plan_at_ratio(LAW, 0.8, 200.0, 6.0)
    n, d = plan.params, plan.tokens
    assert d / n == pytest.approx(200.0, rel=1e-12)
    assert 0.45 + 38.0 / n**0.23 + 100.0 / d**0.24 == pytest.approx(0.8, rel=1e-12)
    assert plan.flops == pytest.approx(6 * n * d, rel=1e-12)


def test_ratio_plan_without_multiplier_is_the_compute_optimal_one() -> None:
    plan = plan_at_ratio(LAW, 0.8, None, 6.0)
    # Hand closed form: N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(a+b)).
    g = (0.23 * 38.0 / (0.24 * 100.0)) ** (1 / 0.47)
    assert plan.params == pytest.approx(g * (plan.flops / 6) ** (0.24 / 0.47), rel=1e-10)
    assert 0.45 + 38.0 / plan.params**0.23 + 100.0 / plan.tokens**0.24 == pytest.approx(0.8)
    assert plan.multiplier == plan.best_multiplier
    assert plan.loss_penalty == pytest.approx(1.0, abs=1e-12)
    assert plan.compute_ratio == pytest.approx(1.0, abs=1e-12)


def test_over_training_costs_compute_and_loss() -> None:
    best = plan_at_ratio(LAW, 0.8, None, 6.0)
    over = plan_at_ratio(LAW, 0.8, 10 * best.best_multiplier, 6.0)
    assert over.compute_ratio == pytest.approx(over.flops / best.flops, rel=1e-12)
    assert over.compute_ratio > 1
    # Penalty at equal compute: the optimal allocation of over.flops, by hand.
    n_opt = ((0.23 * 38.0 / (0.24 * 100.0)) ** (1 / 0.47)) * (over.flops / 6) ** (0.24 / 0.47)
    d_opt = over.flops / 6 / n_opt
    optimal = 38.0 / n_opt**0.23 + 100.0 / d_opt**0.24
    assert over.loss_penalty == pytest.approx((0.8 - 0.45) / optimal, rel=1e-10)
    assert over.loss_penalty > 1


def test_ratio_plan_refuses_a_target_at_or_below_e() -> None:
    with pytest.raises(Infeasible, match="irreducible"):
        plan_at_ratio(LAW, 0.45, 20.0)


def test_link_inverse_feeds_the_plan() -> None:
    link = SigmoidLink(a=-0.75, x0=0.6, k=5.0, b=1.0)
    law = TaskLinkLaw("mmlu", LAW, link)
    loss = link.task_loss_for(0.6)
    plan = plan_at_ratio(LAW, loss, None)
    assert law.predict(plan.params, plan.tokens).accuracy == pytest.approx(0.6, abs=1e-12)
