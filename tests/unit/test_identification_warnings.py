"""Warnings for data-constrained decay constants whose bootstrap interval reaches a search
bound (LOG_R_BOUNDS: 1e-2 .. 1e4)."""

from __future__ import annotations

import numpy as np

from planner.fitting.chinchilla import Ensemble
from planner.fitting.data_constrained import (
    LOG_R_BOUNDS,
    PARAMETER_NAMES,
    identification_warnings,
)

UPPER = float(np.exp(LOG_R_BOUNDS[1]))
LOWER = float(np.exp(LOG_R_BOUNDS[0]))


def test_interval_inside_the_bounds_warns_of_nothing() -> None:
    assert identification_warnings({"r_d_star": (8.0, 30.0), "r_n_star": (2.0, 9.0)}) == []
    assert identification_warnings({}) == []  # nothing to judge
    # The other parameters are never judged, whatever their values.
    assert identification_warnings({"E": (1e4, 1e4), "alpha": (0.01, 0.3)}) == []


def test_upper_bound_reached() -> None:
    warnings = identification_warnings({"r_d_star": (40.0, UPPER), "r_n_star": (2.0, 9.0)})
    assert len(warnings) == 1
    assert warnings[0].startswith("r_d_star: the 95% interval (40, 1e+04) reaches the search")
    assert "bound 10000; these runs do not identify it" in warnings[0]
    assert "repeat their unique data for more epochs" in warnings[0]


def test_both_parameters_and_both_bounds() -> None:
    warnings = identification_warnings(
        {"r_d_star": (LOWER, 3.0), "r_n_star": (LOWER, UPPER * (1 + 1e-9))}
    )
    assert [w.split(":")[0] for w in warnings] == ["r_d_star", "r_n_star"]
    assert "search bound 0.01;" in warnings[0]
    assert "search bound 0.01 and 10000;" in warnings[1]
    assert "N > N_opt(U)" in warnings[1]


def test_from_an_ensemble_with_rows_on_the_bound() -> None:
    """Intervals as the service computes them: percentiles over the bootstrap rows. A tenth of
    the rows ended on the upper bound, so the 97.5th percentile is the bound itself."""
    rng = np.random.default_rng(0)
    rows = np.tile([1.8, 500.0, 1500.0, 0.35, 0.35, 15.0, 5.0], (200, 1))
    rows[:, 5] = np.exp(rng.normal(np.log(15.0), 0.3, size=200))
    rows[:20, 6] = UPPER
    intervals = Ensemble.of(rows).intervals(PARAMETER_NAMES)
    warnings = identification_warnings(intervals)
    assert len(warnings) == 1 and warnings[0].startswith("r_n_star:")
