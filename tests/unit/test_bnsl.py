"""BNSL against LAWS.md §11.9 values (computed from the authors' formula)."""

from __future__ import annotations

import pytest

from planner.errors import InvalidInput
from planner.laws.bnsl import Break, BrokenPowerLaw

FIGURE_1 = BrokenPowerLaw(
    a=1e-3,
    b=4.66e3,
    c0=0.05,
    breaks=(Break(0.49, 3e6, 1.1), Break(-0.811, 1e14, 1.425), Break(2.1, 2e20, 0.05)),
)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (1.0, 4660.0),
        (1e3, 3297.8),
        (3e6, 1521.52),
        (1e10, 27.7221),
        (1e14, 0.427646),
        (1e18, 2.32886),
        (2e20, 9.08266),
        (1e24, 0.00100168),
    ],
)
def test_figure_1_curve(x: float, y: float) -> None:
    """Three breaks, non-monotone (the curve rises between 1e14 and 2e20, then falls)."""
    assert float(FIGURE_1.predict(x)) == pytest.approx(y, rel=5e-6 if y > 1 else 5e-5)


@pytest.mark.parametrize(("x", "y"), [(1e2, 0.498101), (1e4, 0.242839), (1e6, 0.115849)])
def test_one_break_example(x: float, y: float) -> None:
    law = BrokenPowerLaw(a=0.1, b=1.0, c0=0.2, breaks=(Break(0.3, 1e4, 0.5),))
    assert float(law.predict(x)) == pytest.approx(y, rel=5e-6)


def test_bad_parameters_and_inputs() -> None:
    with pytest.raises(InvalidInput, match="d1"):
        BrokenPowerLaw(a=0.0, b=1.0, c0=0.1, breaks=(Break(0.1, -1.0, 0.5),))
    with pytest.raises(InvalidInput, match="at most 3"):
        BrokenPowerLaw(a=0.0, b=1.0, c0=0.1, breaks=(Break(0.1, 1.0, 0.5),) * 4)
    with pytest.raises(InvalidInput, match="x"):
        FIGURE_1.predict([1.0, -2.0])


def test_refit_one_break_from_sampled_points() -> None:
    import numpy as np

    from planner.fitting.bnsl import fit_bnsl, fit_bnsl_auto

    truth = BrokenPowerLaw(a=0.1, b=1.0, c0=0.2, breaks=(Break(0.3, 1e4, 0.5),))
    x = np.logspace(0, 8, 40)
    y = truth.predict(x)
    law = fit_bnsl(x, y, breaks=1)
    assert law.predict(x) == pytest.approx(y, rel=1e-4)
    assert (law.c0, law.breaks[0].c) == pytest.approx((0.2, 0.3), rel=2e-2)
    assert law.breaks[0].d == pytest.approx(1e4, rel=5e-2)
    assert law.extrapolates(1e9) and not law.extrapolates(1e7)
    choice = fit_bnsl_auto(x, y)
    assert choice.breaks >= 1  # a plain power law cannot bend
    assert choice.held_out_error[choice.breaks] < choice.held_out_error[0] / 100


def test_refit_a_non_monotone_curve() -> None:
    """Inverse scaling then recovery: a negative slope change makes the curve rise."""
    import numpy as np

    from planner.fitting.bnsl import fit_bnsl

    truth = BrokenPowerLaw(a=0.05, b=2.0, c0=0.3, breaks=(Break(-0.6, 1e5, 0.3),))
    x = np.logspace(1, 9, 50)
    y = truth.predict(x)
    assert np.any(np.diff(y) > 0) and np.any(np.diff(y) < 0)
    law = fit_bnsl(x, y, breaks=1)
    assert law.predict(x) == pytest.approx(y, rel=1e-3)
