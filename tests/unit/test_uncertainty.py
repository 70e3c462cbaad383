"""Ensemble intervals against solving the query row by row with the planner itself."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import Infeasible
from planner.fitting.data_constrained import PARAMETER_NAMES as COLUMNS
from planner.laws import ChinchillaLaw
from planner.laws.data_constrained import DataConstrainedLaw
from planner.planning.allocation import AllocationQuery, Job
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery, solve
from planner.planning.inference import InferenceQuery
from planner.planning.repeated_data import RepeatedDataQuery
from planner.uncertainty import (
    allocation_intervals,
    inference_intervals,
    loss_interval,
    plan_intervals,
    repeated_plan_intervals,
)
from tests.unit.test_repeated_data import brute_force, reference_loss


def ensemble(rows: int = 60, seed: int = 1) -> np.ndarray:
    """Rows scattered around Epoch's fit, roughly as wide as its bootstrap."""
    rng = np.random.default_rng(seed)
    centre = np.array([1.8172, 482.01, 2085.43, 0.3478, 0.3658])
    spread = np.array([0.025, 0.2, 0.4, 0.015, 0.02])
    noise = rng.normal(size=(rows, 5)) * spread
    vectors = centre * np.where(np.arange(5) < 1, 1 + noise, np.exp(noise))
    vectors[:, 3:] = centre[3:] + noise[:, 3:]
    return vectors


def row_by_row(
    vectors: np.ndarray, query: ComputeOptimalQuery
) -> dict[str, tuple[float, float, float]]:
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
        low, median, high = np.percentile(values, [5, 50, 95])
        out[name] = (float(low), float(median), float(high))
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
    interval = loss_interval("chinchilla", vectors, 7e10, 1.4e12)
    assert interval is not None and interval.kind == "band"
    assert interval[:2] == pytest.approx(tuple(np.percentile(losses, [2.5, 97.5])), rel=1e-12)
    assert loss_interval("chinchilla", vectors[:5], 7e10, 1.4e12) is None  # too few rows


def data_constrained_ensemble(rows: int = 12) -> np.ndarray:
    """Rows around Muennighoff's fit: the Chinchilla part as above, R* spread by ~30%."""
    rng = np.random.default_rng(5)
    centre = np.array([1.869, 520.8, 1487.7, 0.3527, 0.3527, 15.39, 5.31])
    noise = rng.normal(size=(rows, 7)) * np.array([0.01, 0.1, 0.1, 0.01, 0.01, 0.3, 0.3])
    vectors = centre * np.exp(noise)
    vectors[:, 3:5] = centre[3:5] + noise[:, 3:5]
    return vectors


def test_data_constrained_loss_interval_matches_each_rows_law() -> None:
    vectors = data_constrained_ensemble(40)
    losses = [
        float(reference_loss(DataConstrainedLaw(**dict(zip(COLUMNS, row, strict=True))),
                             np.array([6.34e9]), np.array([242e9]), 25e9)[0])
        for row in vectors
    ]  # fmt: skip
    interval = loss_interval("data_constrained", vectors, 6.34e9, 242e9, 25e9)
    assert interval is not None
    assert interval[:2] == pytest.approx(tuple(np.percentile(losses, [2.5, 97.5])), rel=1e-12)
    # Without U the Chinchilla part alone answers.
    chinchilla = loss_interval("chinchilla", vectors[:, :5], 6.34e9, 242e9)
    assert loss_interval("data_constrained", vectors, 6.34e9, 242e9) == chinchilla
    assert interval is not None and chinchilla is not None and interval[0] > chinchilla[0]


def test_repeated_plan_intervals_match_brute_force_per_row() -> None:
    vectors = data_constrained_ensemble()
    query = RepeatedDataQuery(
        DataConstrainedLaw(**dict(zip(COLUMNS, vectors[0], strict=True))), 25e9, compute=1e22
    )
    intervals = repeated_plan_intervals(vectors, query)
    params = []
    for row in vectors:
        law = DataConstrainedLaw(**dict(zip(COLUMNS, row, strict=True)))
        params.append(brute_force(law, 1e22, 25e9)[0])
    expected = np.percentile(params, [5, 50, 95])
    assert intervals["params"] == pytest.approx(tuple(expected), rel=1e-4)
    assert intervals["flops"] == pytest.approx((1e22, 1e22, 1e22), rel=1e-9)
    low, _, high = intervals["epochs"]
    assert low < 1e22 / (6 * expected[0]) / 25e9 * (1 + 1e-3)
    assert high > 1e22 / (6 * expected[2]) / 25e9 * (1 - 1e-3)


def test_inference_intervals_match_a_grid_per_row() -> None:
    """Each row's inference-aware optimum by a dense grid over ln N on its loss constraint."""
    vectors = ensemble(40, seed=3)
    law = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    query = InferenceQuery(law, 1e13, target_loss=2.2)
    bands = inference_intervals(vectors, query)
    params, costs = [], []
    for e, a, b, alpha, beta in vectors:
        low = (a / (2.2 - e)) ** (1 / alpha) * (1 + 1e-9)
        n = np.exp(np.linspace(np.log(low), np.log(low * 1e4), 400_001))
        d = (b / (2.2 - e - a * n**-alpha)) ** (1 / beta)
        cost = 6 * n * d + 2 * n * 1e13
        params.append(n[np.argmin(cost)])
        costs.append(cost.min())
    assert bands["params"] == pytest.approx(tuple(np.percentile(params, [5, 50, 95])), rel=1e-4)
    assert bands["cost"] == pytest.approx(tuple(np.percentile(costs, [5, 50, 95])), rel=1e-7)
    assert bands["loss"] == pytest.approx((2.2, 2.2, 2.2), rel=1e-9)


def water_fill_two(law_a: ChinchillaLaw, law_b: ChinchillaLaw, total: float) -> float:
    """Job a's share when w=1 jobs a and b split `total` with equal marginal loss per FLOP,
    from the frontier L*(C) = E + K (C/6)^-gamma (LAWS.md §1.7), by bisection."""

    def marginal(law: ChinchillaLaw, c: float) -> float:
        g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
        k = law.A * g**-law.alpha + law.B * g**law.beta
        gamma = law.alpha * law.beta / (law.alpha + law.beta)
        return gamma * k / 6 * (c / 6) ** -(1 + gamma)

    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2
        if marginal(law_a, mid * total) > marginal(law_b, (1 - mid) * total):
            low = mid
        else:
            high = mid
    return low * total


def test_allocation_intervals_resolve_the_split_per_row() -> None:
    vectors = ensemble(30, seed=4)
    fixed = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)
    point = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    query = AllocationQuery((Job("fitted", point), Job("published", fixed)), 1e24)
    bands = allocation_intervals([vectors, None], query)
    shares = [
        water_fill_two(ChinchillaLaw(E=e, A=a, B=b, alpha=al, beta=be), fixed, 1e24)
        for e, a, b, al, be in vectors
    ]
    expected = np.percentile(shares, [5, 50, 95])
    assert bands[0]["flops"] == pytest.approx(tuple(expected), rel=1e-6)
    rest = np.percentile(1e24 - np.array(shares), [5, 50, 95])
    assert bands[1]["flops"] == pytest.approx(tuple(rest), rel=1e-6)
    assert allocation_intervals([None, None], query) == [{}, {}]
