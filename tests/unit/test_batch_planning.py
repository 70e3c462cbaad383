"""Vectorised plans and predictions (planner.planning.batch) against the single-plan functions,
row by row, and the closed form against the Chinchilla formula written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput, PlannerError
from planner.laws import Law, parse_law, predict_loss
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import batch, closed_form, compute_optimal
from planner.planning.compute_optimal import Caps, ComputeOptimalPlan, ComputeOptimalQuery
from planner.uncertainty import MIN_ROWS, law_loss_interval
from tests.conftest import EPOCH, HOFFMANN_TEX
from tests.unit.test_prediction_bands import CENTRES, ensemble

BUDGETS = np.geomspace(1e18, 1e27, 400)
TARGETS = np.linspace(1.83, 3.0, 300)


def chinchilla_n_opt(law: ChinchillaLaw, compute: float, k: float) -> float:
    """LAWS.md §1.7 (a): N_opt = G (C/k)^(beta/(alpha+beta)),
    G = (alpha A / (beta B))^(1/(alpha+beta))."""
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    return float(g * (compute / k) ** (law.beta / (law.alpha + law.beta)))


def test_closed_form_is_chinchillas_formula() -> None:
    for law, k in ((EPOCH, 6.0), (HOFFMANN_TEX, 6.0), (EPOCH, 8.0)):
        rows = batch.budget_rows(law, BUDGETS, Caps(), k)
        assert rows.answered.all() and rows.binding == "compute"
        for i, compute in enumerate(BUDGETS):
            n = chinchilla_n_opt(law, compute, k)
            d = compute / (k * n)
            loss = law.E + law.A / n**law.alpha + law.B / d**law.beta
            assert rows.params[i] == pytest.approx(n, rel=1e-9)
            assert rows.tokens[i] == pytest.approx(d, rel=1e-9)
            assert rows.loss[i] == pytest.approx(loss, rel=1e-9)
            assert rows.flops[i] == pytest.approx(compute, rel=1e-12)


def test_published_reference_values() -> None:
    """LAWS.md §11.2, Epoch row: C = 1e23 and 5.76e23."""
    rows = batch.budget_rows(EPOCH, np.array([1e23, 5.76e23]), Caps(), 6.0)
    assert rows.params == pytest.approx([2.94461e10, 7.22487e10], rel=1e-5)
    assert rows.tokens == pytest.approx([5.66005e11, 1.32874e12], rel=1e-5)
    assert rows.loss == pytest.approx([2.032052, 1.974441], rel=1e-6)


def assert_same_plan(rows: batch.ClosedFormRows, i: int, plan: ComputeOptimalPlan) -> None:
    got = (rows.params[i], rows.tokens[i], rows.loss[i], rows.flops[i])
    assert got == pytest.approx((plan.params, plan.tokens, plan.loss, plan.flops), rel=1e-9)
    assert (rows.binding,) == plan.binding and plan.solver == "closed_form"


@pytest.mark.parametrize(
    "caps",
    [Caps(), Caps(max_params=1e11), Caps(max_tokens=2e12), Caps(unique_tokens=1e12, max_epochs=2)],
)
def test_budget_rows_match_the_single_plan(caps: Caps) -> None:
    rows = batch.budget_rows(EPOCH, BUDGETS, caps, 6.0)
    for i, compute in enumerate(BUDGETS):
        query = ComputeOptimalQuery(EPOCH, compute=float(compute), caps=caps)
        plan = compute_optimal.try_closed_form(query)
        if rows.answered[i]:
            assert plan is not None
            assert_same_plan(rows, i, plan)
        else:  # a cap binds: the single plan needs the GP
            assert plan is None
    assert rows.answered.any() and (caps == Caps()) == rows.answered.all()


@pytest.mark.parametrize("caps", [Caps(), Caps(max_params=3e10), Caps(max_tokens=1e12)])
def test_target_rows_match_the_single_plan(caps: Caps) -> None:
    rows = batch.target_rows(EPOCH, TARGETS, caps, 6.0)
    for i, target in enumerate(TARGETS):
        query = ComputeOptimalQuery(EPOCH, target_loss=float(target), caps=caps)
        try:
            plan = compute_optimal.try_closed_form(query)
        except Infeasible:
            assert not rows.answered[i]
            continue
        if rows.answered[i]:
            assert plan is not None
            assert_same_plan(rows, i, plan)
        else:
            assert plan is None
    assert rows.answered.any()


def test_rows_without_a_closed_form_answer_are_left() -> None:
    # At or below E, or needing more than 1e300 FLOPs: the single path refuses those.
    rows = batch.target_rows(EPOCH, np.array([1.5, EPOCH.E, 2.0]), Caps(), 6.0)
    assert rows.answered.tolist() == [False, False, True]
    assert rows.binding == "target_loss"
    no_floor = EPOCH.model_copy(update={"E": 0.0})
    rows = batch.target_rows(no_floor, np.array([1e-100, 0.5]), Caps(), 6.0)
    assert rows.answered.tolist() == [False, True]
    with pytest.raises(Infeasible, match="more than 1e300 FLOPs"):
        compute_optimal.try_closed_form(ComputeOptimalQuery(no_floor, target_loss=1e-100))
    # A cap exactly at the free optimum, or a hair above it: the single path decides.
    n0, _ = closed_form.optimal_allocation(EPOCH, 1e23)
    for cap in (n0, n0 * (1 + 1e-12)):
        rows = batch.budget_rows(EPOCH, np.array([1e23]), Caps(max_params=cap), 6.0)
        assert not rows.answered[0]
    # Out of float range: the single path's range checks refuse it.
    assert not batch.budget_rows(EPOCH, np.array([1e305]), Caps(), 6.0).answered[0]


def test_loss_floor_under_caps() -> None:
    assert batch.loss_floor(EPOCH, Caps()) is None
    floor = batch.loss_floor(EPOCH, Caps(max_params=1e10, max_tokens=1e12))
    assert floor == pytest.approx(
        EPOCH.E + EPOCH.A / 1e10**EPOCH.alpha + EPOCH.B / 1e12**EPOCH.beta
    )


def test_assemble_merges_closed_form_and_solved_rows() -> None:
    budgets = np.array([1e21, 1e25, 1e22, 1e26])
    caps = Caps(max_params=1e11)
    rows = batch.budget_rows(EPOCH, budgets, caps, 6.0)
    assert rows.answered.tolist() == [True, False, True, False]
    solved = {
        i: compute_optimal.solve(ComputeOptimalQuery(EPOCH, compute=float(budgets[i]), caps=caps))
        for i in (1, 3)
    }
    plans = batch.assemble(4, solved, rows)
    assert [plans.solver[i] for i in range(4)] == [
        "closed_form",
        solved[1].solver,
        "closed_form",
        solved[3].solver,
    ]
    assert [plans.binding[i] for i in range(4)] == [
        "compute",
        "compute,max_params",
        "compute",
        "compute,max_params",
    ]
    assert plans.params[1] == solved[1].params == 1e11
    assert plans.params[0] == rows.params[0]
    with pytest.raises(ValueError, match="1 of 4 rows have no plan"):
        batch.assemble(4, {1: solved[1]}, rows)
    only_solved = batch.assemble(2, {0: solved[1], 1: solved[3]})
    assert only_solved.flops.tolist() == [solved[1].flops, solved[3].flops]


def test_solve_each_keeps_errors_in_place() -> None:
    def solve(x: float) -> float:
        if x < 0:
            raise InvalidInput("x", "negative")
        return math.sqrt(x)

    outcomes = batch.solve_each(solve, [4.0, -1.0, 9.0])
    assert outcomes[0] == 2.0 and outcomes[2] == 3.0
    assert isinstance(outcomes[1], PlannerError) and outcomes[1].field == "x"


# -- predictions -------------------------------------------------------------------------------

POINTS = 57
PARAMS = np.geomspace(1e8, 7e10, POINTS)
TOKENS = PARAMS * np.linspace(5.0, 200.0, POINTS)
UNIQUE = TOKENS / np.linspace(0.5, 30.0, POINTS)  # from fewer than one epoch to 30


def law_of(form: str) -> Law:
    extra = {"k": 6.0} if form == "bnsl_compute" else {}
    return parse_law(form, {**CENTRES[form], **extra})


FORMS = [(form, None) for form in CENTRES] + [("data_constrained", UNIQUE)]


@pytest.mark.parametrize(("form", "unique"), FORMS)
def test_predicted_losses_match_predict_loss(form: str, unique: np.ndarray | None) -> None:
    law = law_of(form)
    losses = batch.predict_losses(law, PARAMS, TOKENS, unique)
    for i in range(POINTS):
        u = None if unique is None else float(unique[i])
        expected = predict_loss(law, float(PARAMS[i]), float(TOKENS[i]), u)
        assert losses[i] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("form", "unique"), FORMS)
@pytest.mark.parametrize("max_cells", [batch.BAND_CELLS, 1_000])
def test_bands_match_the_single_interval(
    form: str, unique: np.ndarray | None, max_cells: int
) -> None:
    law = law_of(form)
    rows = ensemble(form, rows=60)
    low, high = batch.loss_bands(law, rows, PARAMS, TOKENS, unique, max_cells)
    for i in range(POINTS):
        u = None if unique is None else float(unique[i])
        single = law_loss_interval(law, rows, float(PARAMS[i]), float(TOKENS[i]), u)
        assert single is not None
        assert (low[i], high[i]) == pytest.approx((single.low, single.high), rel=1e-12)


def test_bands_skip_rows_that_overflow_and_need_enough_rows() -> None:
    rows = ensemble("chinchilla", rows=MIN_ROWS + 2)
    rows[0, 3] = 5.0  # alpha 5: A / N^5 underflows to 0 for large N, fine; overflows for tiny N
    params = np.array([1e-80, 1e9])
    tokens = np.array([1e10, 2e10])
    low, high = batch.loss_bands(EPOCH, rows, params, tokens, None)
    for i in range(2):
        single = law_loss_interval(EPOCH, rows, float(params[i]), float(tokens[i]))
        assert single is not None
        assert (low[i], high[i]) == pytest.approx((single.low, single.high), rel=1e-12)
    few = rows[: MIN_ROWS - 1]
    low, high = batch.loss_bands(EPOCH, few, params, tokens, None)
    assert np.isnan(low).all() and np.isnan(high).all()
    assert law_loss_interval(EPOCH, few, 1e9, 2e10) is None
