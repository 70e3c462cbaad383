"""Ensemble intervals against solving the query row by row with the planner itself."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import Infeasible
from planner.laws import ChinchillaLaw
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery, solve
from planner.uncertainty import loss_interval, plan_intervals


def ensemble(rows: int = 60, seed: int = 1) -> np.ndarray:
    """Rows scattered around Epoch's fit, roughly as wide as its bootstrap."""
    rng = np.random.default_rng(seed)
    centre = np.array([1.8172, 482.01, 2085.43, 0.3478, 0.3658])
    spread = np.array([0.025, 0.2, 0.4, 0.015, 0.02])
    noise = rng.normal(size=(rows, 5)) * spread
    vectors = centre * np.where(np.arange(5) < 1, 1 + noise, np.exp(noise))
    vectors[:, 3:] = centre[3:] + noise[:, 3:]
    return vectors


def row_by_row(vectors: np.ndarray, query: ComputeOptimalQuery) -> dict[str, tuple[float, float]]:
    plans = []
    for e, a, b, alpha, beta in vectors:
        law = ChinchillaLaw(E=e, A=a, B=b, alpha=alpha, beta=beta)
        try:
            plans.append(
                solve(ComputeOptimalQuery(law, query.compute, query.target_loss, query.caps))
            )
        except Infeasible:  # rows for which the request has no answer are left out
            continue
    out = {}
    for name in ("params", "tokens", "loss", "flops"):
        values = np.array([getattr(p, name) for p in plans])
        low, high = np.percentile(values, [2.5, 97.5])
        out[name] = (float(low), float(high))
    return out


@pytest.mark.parametrize(
    ("compute", "target", "caps"),
    [
        (1e23, None, Caps()),
        (1e25, None, Caps(max_params=1e11)),
        (1e25, None, Caps(max_tokens=2e12)),
        (None, 2.1, Caps()),
        (None, 2.1, Caps(max_params=1e10)),
    ],
)
def test_vectorised_intervals_match_row_by_row_solves(
    compute: float | None, target: float | None, caps: Caps
) -> None:
    vectors = ensemble()
    law = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    query = ComputeOptimalQuery(law, compute, target, caps)
    fast = plan_intervals(vectors, query)
    slow = row_by_row(vectors, query)
    assert set(fast) == set(slow)
    for name in slow:
        assert fast[name] == pytest.approx(slow[name], rel=1e-9), name


def test_loss_interval_brackets_the_point_prediction() -> None:
    vectors = ensemble()
    e, a, b, alpha, beta = vectors.T
    losses = e + a * 7e10**-alpha + b * 1.4e12**-beta
    interval = loss_interval(vectors, 7e10, 1.4e12)
    assert interval == pytest.approx(tuple(np.percentile(losses, [2.5, 97.5])), rel=1e-12)
    assert loss_interval(vectors[:5], 7e10, 1.4e12) is None  # too few rows to say
