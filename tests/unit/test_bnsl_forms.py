"""Broken power laws as stored forms (bnsl_compute, bnsl_params, bnsl_tokens): validation,
prediction from (N, D) against the formula written out here, conversions with BrokenPowerLaw,
refusal of planning, fits and bootstrap rows."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.fitting.bnsl import bootstrap_bnsl, fit_bnsl, fit_bnsl_form
from planner.laws import (
    DEFAULT_FORM_ORDER,
    FORMS,
    BnslComputeLaw,
    BnslParamsLaw,
    BnslTokensLaw,
    parse_law,
    predict_loss,
)
from planner.laws.bnsl import Break, BrokenPowerLaw
from planner.laws.bnsl_forms import bnsl_law, columns, row_of

ONE_BREAK = {"a": 0.1, "b": 1.0, "c0": 0.2, "c1": 0.3, "d1": 1e4, "f1": 0.5}


def by_hand(x: float, a: float, b: float, c0: float, *breaks: tuple[float, float, float]) -> float:
    """LAWS.md §7 written out: a + b x^-c0 prod (1 + (x/d)^(1/f))^(-c f)."""
    value = b * x**-c0
    for c, d, f in breaks:
        value *= (1 + (x / d) ** (1 / f)) ** (-c * f)
    return float(a + value)


def test_each_form_predicts_from_params_and_tokens() -> None:
    n, d = 3e3, 7e5
    compute = parse_law("bnsl_compute", {**ONE_BREAK, "d1": 1e10, "k": 6.0})
    params = parse_law("bnsl_params", ONE_BREAK)
    tokens = parse_law("bnsl_tokens", {**ONE_BREAK, "d1": 1e6})
    assert predict_loss(compute, n, d, None) == pytest.approx(
        by_hand(6 * n * d, 0.1, 1.0, 0.2, (0.3, 1e10, 0.5)), rel=1e-12
    )
    assert predict_loss(params, n, d, None) == pytest.approx(
        by_hand(n, 0.1, 1.0, 0.2, (0.3, 1e4, 0.5)), rel=1e-12
    )
    assert predict_loss(tokens, n, d, None) == pytest.approx(
        by_hand(d, 0.1, 1.0, 0.2, (0.3, 1e6, 0.5)), rel=1e-12
    )
    # k is part of the compute law: another k is another x.
    other = parse_law("bnsl_compute", {**ONE_BREAK, "d1": 1e10, "k": 8.0})
    assert predict_loss(other, n, d, None) == pytest.approx(
        by_hand(8 * n * d, 0.1, 1.0, 0.2, (0.3, 1e10, 0.5)), rel=1e-12
    )
    # Arrays broadcast like the other forms.
    sizes = np.array([1e2, 1e4, 1e6])
    assert params.predict(sizes, 1e9) == pytest.approx(
        [by_hand(float(x), 0.1, 1.0, 0.2, (0.3, 1e4, 0.5)) for x in sizes], rel=1e-12
    )


def test_registered_after_the_chinchilla_family() -> None:
    assert DEFAULT_FORM_ORDER[:4] == (
        "chinchilla",
        "overtraining",
        "data_constrained",
        "sparse_avg_params",
    )
    assert DEFAULT_FORM_ORDER[4:7] == ("bnsl_compute", "bnsl_params", "bnsl_tokens")
    assert FORMS["bnsl_tokens"] is BnslTokensLaw


@pytest.mark.parametrize("form", ["bnsl_compute", "bnsl_params", "bnsl_tokens"])
def test_planning_is_refused(form: str) -> None:
    law = parse_law(form, ONE_BREAK)
    with pytest.raises(Infeasible, match="has no N/D split; planning queries need a chinchilla"):
        law.as_chinchilla()


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"c1": 0.3, "d1": 1e4}, "parameters", "break 1 needs all of c1, d1 and f1"),
        (
            {**ONE_BREAK, "c3": 0.1, "d3": 1e6, "f3": 0.5},
            "parameters",
            "break 3 is given without break 2",
        ),
        (
            {**ONE_BREAK, "c2": 0.1, "d2": 1e3, "f2": 0.5},
            "parameters",
            "must not decrease: d2 = 1000 < d1 = 10000",
        ),
        ({"d1": -1.0, "c1": 0.1, "f1": 0.5}, "parameters.d1", "> 0"),
        ({"b": 0.0}, "parameters.b", "> 0"),
        ({"a": float("nan")}, "parameters.a", "finite"),
        ({"k": 6.0}, "parameters.k", "unknown parameter"),
        ({"E": 1.0}, "parameters.E", "unknown parameter"),
    ],
)
def test_bad_parameters_name_the_field(values: dict[str, float], field: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        parse_law("bnsl_params", {"a": 0.1, "b": 1.0, "c0": 0.2, **values})
    assert caught.value.field == field


def test_k_belongs_to_the_compute_form_and_defaults_to_six() -> None:
    assert parse_law("bnsl_compute", ONE_BREAK).to_mapping()["k"] == 6.0
    with pytest.raises(InvalidInput, match="> 0") as caught:
        parse_law("bnsl_compute", {**ONE_BREAK, "k": 0.0})
    assert caught.value.field == "parameters.k"


def test_conversions_both_ways() -> None:
    """Breaks given out of order are stored sorted by location: the same function."""
    curve = BrokenPowerLaw(
        a=1e-3,
        b=4.66e3,
        c0=0.05,
        breaks=(Break(2.1, 2e20, 0.05), Break(0.49, 3e6, 1.1), Break(-0.811, 1e14, 1.425)),
    )
    stored = bnsl_law("compute", curve, k=6.0)
    assert isinstance(stored, BnslComputeLaw)
    assert [brk.d for brk in stored.breaks] == [3e6, 1e14, 2e20]
    assert list(stored.to_mapping()) == [*columns(3), "k"]
    assert stored.to_mapping() == {**dict(zip(columns(3), row_of(curve), strict=True)), "k": 6.0}
    x = np.logspace(0, 24, 25)
    assert stored.predict_x(x) == pytest.approx(curve.predict(x), rel=1e-13)
    back = stored.curve(fitted_up_to=1e20)
    assert back.predict(x) == pytest.approx(curve.predict(x), rel=1e-13)
    assert back.fitted_up_to == 1e20 and back.extrapolates(1e21)
    curve_only = {name: v for name, v in stored.to_mapping().items() if name != "k"}
    assert BnslParamsLaw.from_curve(back) == parse_law("bnsl_params", curve_only)
    with pytest.raises(InvalidInput, match="variable"):
        bnsl_law("steps", curve)


def test_no_break_form() -> None:
    law = parse_law("bnsl_tokens", {"a": 1.5, "b": 400.0, "c0": 0.3})
    assert isinstance(law, BnslTokensLaw) and law.breaks == ()
    assert predict_loss(law, 1e9, 1e11, None) == pytest.approx(1.5 + 400.0 * 1e11**-0.3)


def curve_points() -> tuple[np.ndarray, np.ndarray, BrokenPowerLaw]:
    truth = BrokenPowerLaw(a=0.1, b=1.0, c0=0.2, breaks=(Break(0.3, 1e4, 0.5),))
    x = np.logspace(0, 8, 40)
    return x, truth.predict(x), truth


def test_fit_bnsl_form_stores_what_the_1d_fitters_find() -> None:
    x, y, _ = curve_points()
    auto = fit_bnsl_form(x, y, "params")
    assert isinstance(auto.law, BnslParamsLaw)
    assert auto.choice.breaks == len(auto.law.breaks) >= 1
    errors = auto.choice.held_out_error
    assert set(errors) == {0, 1, 2, 3}
    assert errors[auto.choice.breaks] <= 1.1 * min(errors.values()) + 1e-12  # parsimony rule
    reference = fit_bnsl(x, y, auto.choice.breaks, 0)  # the refit on all points
    assert auto.law.predict_x(x) == pytest.approx(reference.predict(x), rel=1e-12)
    assert auto.choice.law.fitted_up_to == pytest.approx(1e8)
    assert auto.diagnostics.runs == 40 and auto.diagnostics.rmse_log_loss < 1e-4
    fixed = fit_bnsl_form(x * 1e12, y, "compute", breaks=1, k=8.0)
    assert isinstance(fixed.law, BnslComputeLaw) and fixed.law.k == 8.0
    assert fixed.choice.held_out_error == {}
    # x = 8 N D: predicting from (N, D) goes through the same x the fit saw.
    n, d = 1e5, x[7] * 1e12 / (8 * 1e5)
    assert predict_loss(fixed.law, n, d, None) == pytest.approx(y[7], rel=1e-4)
    with pytest.raises(InvalidInput, match="variable"):
        fit_bnsl_form(x, y, "steps")


def test_bootstrap_rows_are_fits_of_each_resample() -> None:
    x, y, _ = curve_points()
    rng = np.random.default_rng(2)
    indices = [rng.integers(0, x.size, x.size) for _ in range(3)]
    indices.append(np.array([0, 1, 2, 3, 4, 5] * 7))  # 6 distinct points for 6 parameters
    rows = bootstrap_bnsl(x, y, 1, indices, seed=0)
    assert rows.shape == (4, len(columns(1)))
    assert np.all(np.isnan(rows[-1]))
    for index, row in zip(indices[:-1], rows[:-1], strict=True):
        curve = fit_bnsl(x[index], y[index], 1, 0)
        assert row == pytest.approx(row_of(curve), rel=1e-12)
    with pytest.raises(InvalidInput, match="breaks"):
        bootstrap_bnsl(x, y, 4, indices)
