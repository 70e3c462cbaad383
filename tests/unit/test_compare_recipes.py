"""CompareLaws' domain: stored laws as recipes, bands from paired ensemble rows (checked against
closed-form multipliers row by row), and the request's checks naming its fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.catalog import CATALOG
from planner.compare_recipes import ComparisonQuery, Recipe, compare
from planner.errors import InvalidInput, WrongLawForm
from planner.laws import BnslParamsLaw, ComputePowerLaw

BY_NAME = {family.name: family for family in CATALOG}
FIRST = ComputePowerLaw(L_inf=1.7, A=3000.0, alpha=0.17)
SECOND = ComputePowerLaw(L_inf=1.6, A=2500.0, alpha=0.15)


def _power_multiplier(first: np.ndarray, second: np.ndarray, budget: float) -> float:
    """m = C_second(L_first(C)) / C for rows (L_inf, A, alpha, C0), C0 = 0, in closed form."""
    loss = first[0] + first[1] * budget ** -first[2]
    return float((second[1] / (loss - second[0])) ** (1 / second[2]) / budget)


def test_gadre_through_the_stored_laws() -> None:
    refinedweb = BY_NAME["overtraining-gadre-2024-refinedweb"].laws[0].law()
    redpajama = BY_NAME["overtraining-gadre-2024-redpajama"].laws[0].law()
    query = ComparisonQuery(path="multiplier", multiplier=20.0, budgets=(1e20, 1e22, 1e24))
    result = compare(Recipe(refinedweb), Recipe(redpajama), query)
    assert result.multipliers == pytest.approx([1.120, 1.493, 3.694], abs=0.0005)
    assert result.crossovers == [] and [s.winner for s in result.stretches] == ["first"]
    assert result.bands == [None, None, None]  # published laws: no ensembles
    assert len(result.axis_values) == 100 and result.axis_values[0] == pytest.approx(1e15)


def test_the_band_is_the_percentiles_of_the_paired_rows_multipliers() -> None:
    rng = np.random.default_rng(3)
    first_rows = np.column_stack(
        [1.7 + rng.normal(0, 0.02, 50), np.full(50, 3000.0), 0.17 + rng.normal(0, 0.005, 50),
         np.zeros(50)]
    )  # fmt: skip
    second_rows = np.column_stack(
        [1.6 + rng.normal(0, 0.02, 40), np.full(40, 2500.0), 0.15 + rng.normal(0, 0.005, 40),
         np.zeros(40)]
    )  # fmt: skip
    budget = 1e22
    result = compare(
        Recipe(FIRST, ensemble=first_rows),
        Recipe(SECOND, ensemble=second_rows),
        ComparisonQuery(budgets=(budget,)),
    )
    # Rows paired i with i over the shorter ensemble (40).
    by_row = [_power_multiplier(first_rows[i], second_rows[i], budget) for i in range(40)]
    expected = np.percentile(by_row, [5, 50, 95], method="inverted_cdf")
    assert result.bands[0] == pytest.approx(tuple(expected), rel=1e-9)
    assert result.multipliers[0] == pytest.approx(
        _power_multiplier(np.array(FIRST.row()), np.array(SECOND.row()), budget), rel=1e-9
    )


def test_no_band_without_both_ensembles_or_with_too_few_rows() -> None:
    rows = np.tile(FIRST.row(), (20, 1))
    query = ComparisonQuery(budgets=(1e21,))
    assert compare(Recipe(FIRST, ensemble=rows), Recipe(SECOND), query).bands == [None]
    few = compare(Recipe(FIRST, ensemble=rows[:5]), Recipe(SECOND, ensemble=rows[:5]), query)
    assert few.bands == [None]


def test_accelerator_hours_default_range_is_the_first_recipes_hours() -> None:
    query = ComparisonQuery(
        axis="accelerator_hours",
        first_flops_per_accelerator_second=4e14,
        second_flops_per_accelerator_second=2e14,
        budgets=(1e4,),
    )
    result = compare(Recipe(FIRST), Recipe(FIRST), query)
    assert result.axis_values[0] == pytest.approx(1e15 / (3600 * 4e14))
    assert result.axis_values[-1] == pytest.approx(1e30 / (3600 * 4e14))
    assert result.multipliers == pytest.approx([2.0], rel=1e-12)  # same law, half the speed
    assert [s.winner for s in result.stretches] == ["first"]


def test_a_curve_of_parameters_alone_is_the_wrong_form() -> None:
    law = BnslParamsLaw(a=1.0, b=10.0, c0=0.2)
    with pytest.raises(WrongLawForm, match="the second law is bnsl_params"):
        compare(Recipe(FIRST), Recipe(law), ComparisonQuery())


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"path": "diagonal"}, "path"),
        ({"path": "multiplier"}, "multiplier"),
        ({"path": "multiplier", "multiplier": -20.0}, "multiplier"),
        ({"multiplier": 20.0}, "multiplier"),
        ({"axis": "dollars"}, "axis"),
        ({"axis": "accelerator_hours"}, "first_flops_per_accelerator_second"),
        (
            {"axis": "accelerator_hours", "first_flops_per_accelerator_second": 4e14},
            "second_flops_per_accelerator_second",
        ),
        ({"first_flops_per_accelerator_second": 4e14}, "first_flops_per_accelerator_second"),
        ({"budgets": (1e20, math.nan)}, "budgets[1]"),
        ({"budgets": (-1.0,)}, "budgets[0]"),
        ({"budgets": (1e20,) * 101}, "budgets"),
        ({"low": 0.0}, "low"),
        ({"high": math.inf}, "high"),
        ({"low": 1e22, "high": 1e20}, "high"),
        ({"points": 1}, "points"),
        ({"points": 1001}, "points"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ComparisonQuery(**settings).validated()  # type: ignore[arg-type]
    assert caught.value.field == field


def test_params_axis_compares_model_sizes_at_a_fixed_ratio() -> None:
    """Axis params at M = 20: what N RedPajama needs to match RefinedWeb's loss at N, from
    Gadre et al.'s closed form inverted for compute, then N = sqrt(C / (6 M))."""
    by_name = {family.name: family for family in CATALOG}
    refinedweb = by_name["overtraining-gadre-2024-refinedweb"].laws[0].law()
    redpajama = by_name["overtraining-gadre-2024-redpajama"].laws[0].law()
    query = ComparisonQuery(path="multiplier", multiplier=20.0, axis="params", budgets=(1e9, 7e10))
    result = compare(Recipe(refinedweb), Recipe(redpajama), query)
    for budget, multiplier in zip((1e9, 7e10), result.multipliers, strict=True):
        compute = 6 * 20.0 * budget**2
        scale = lambda p: p["a"] * 20.0 ** p["eta"] + p["b"] * 20.0 ** -p["eta"]  # noqa: E731
        rw, rp = refinedweb.to_mapping(), redpajama.to_mapping()
        loss = rw["E"] + scale(rw) * compute ** -rw["eta"]
        needed = (scale(rp) / (loss - rp["E"])) ** (1 / rp["eta"])
        assert multiplier == pytest.approx(math.sqrt(needed / (6 * 20.0)) / budget, rel=1e-9)
    assert result.crossovers == [] and result.axis_values[0] == pytest.approx(1e6)


def test_params_axis_needs_a_fixed_ratio_and_laws_of_n_and_d() -> None:
    by_name = {family.name: family for family in CATALOG}
    chinchilla = by_name["chinchilla-hoffmann-2022"].laws[0].law()
    with pytest.raises(InvalidInput, match="path 'multiplier'"):
        compare(Recipe(chinchilla), Recipe(chinchilla), ComparisonQuery(axis="params"))
    power = ComputePowerLaw(L_inf=1.7, A=400.0, alpha=0.15)
    with pytest.raises(WrongLawForm, match="axis 'params'"):
        compare(
            Recipe(chinchilla),
            Recipe(power),
            ComparisonQuery(path="multiplier", multiplier=20.0, axis="params"),
        )
