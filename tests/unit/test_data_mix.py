"""Data-pool mixes (Goyal et al.; LAWS.md §5) against §11.9 and a naive epoch-by-epoch loop."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput, Unsupported
from planner.planning.data_mix import (
    DataMixQuery,
    Pool,
    error_curve,
    fit_pool,
    overtake_budget,
    plan_data_mix,
)


def naive_error(pools: list[Pool], n: float, a: float = 1.0, d: float = 0.1) -> float:
    """The authors' `objective.py` loop, one epoch at a time in plain floats, with the
    size-weighted mean of the decayed utilities (LAWS.md §5) for a union of pools."""
    per_epoch = sum(p.size for p in pools)
    y = 0.0
    for j in range(int(n // per_epoch) + 1):
        b = sum(p.size * p.utility * 0.5 ** (j / p.half_life) for p in pools) / per_epoch
        seen = a * min(per_epoch * (j + 1), n) / 1e5
        if j == 0:
            y = seen**b + d
        else:
            y *= (seen / (a * per_epoch * j / 1e5)) ** b
    return y


def paper_equal_share_error(
    utilities: list[float], half_lives: list[float], bucket: float, n: float, d: float = 0.1
) -> float:
    """The paper's equal-share mix: b_eff,j = (1/p) sum_i b_i 0.5^(j/tau_i), p S per epoch."""
    p = len(utilities)
    per_epoch = p * bucket
    epochs = np.arange(n // per_epoch + 1)
    b = np.mean([u * 0.5 ** (epochs / t) for u, t in zip(utilities, half_lives, strict=True)], 0)
    hi = np.minimum(per_epoch * (epochs + 1), n) / 1e5
    lo = per_epoch * epochs / 1e5
    y = hi[0] ** b[0] + d
    for j in range(1, len(epochs)):
        y *= (hi[j] / lo[j]) ** b[j]
    return float(y)


# Toy pools with quality falling and size rising: the quality-quantity trade-off in miniature.
TOP = Pool("top", 1e6, -0.3, 1.0)
MID = Pool("mid", 4e6, -0.2, 2.0)
REST = Pool("rest", 5e7, -0.15, 6.0)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [(6.4e6, 0.707097), (1.28e7, 0.658644), (2.56e7, 0.621022), (1.28e8, 0.589398)],
)
def test_laws_reference_values(samples: float, expected: float) -> None:
    """§11.9: a = 1, d = 0.1, S = 12.8M, b = -0.12, tau = 2 (half, one, two and ten epochs)."""
    y = error_curve([Pool("bucket", 12.8e6, -0.12, 2.0)], [samples])
    assert float(y[0]) == pytest.approx(expected, abs=5e-7)


MIXES = [
    [Pool("p", 3e6, -0.25, 1.5), Pool("q", 7.3e6, -0.08, 6.0)],
    [Pool("p", 1e6, -0.4, 0.7), Pool("q", 2.5e6, -0.1, 3.0), Pool("r", 9e5, -0.21, 9.5)],
    [
        Pool("p", 1.28e7, -0.12, 2.0),
        Pool("q", 2e6, -0.33, 1.0),
        Pool("r", 5.5e6, -0.05, 10.0),
        Pool("s", 1.7e7, -0.17, 4.2),
    ],
]


@pytest.mark.parametrize("mix", MIXES, ids=["2 pools", "3 pools", "4 pools"])
@pytest.mark.parametrize("epochs", [0.3, 1.0, 1.75, 3.0, 7.4, 26.01, 183.5])
def test_mixes_match_the_naive_loop(mix: list[Pool], epochs: float) -> None:
    per_epoch = sum(p.size for p in mix)
    for a, d in ((1.0, 0.1), (0.022, 0.0), (3.5, 0.4)):
        n = epochs * per_epoch
        y = float(error_curve(mix, [n], a, d)[0])
        assert y == pytest.approx(naive_error(mix, n, a, d), rel=1e-12, abs=0)


def test_curve_is_vectorised_and_exact_over_many_epochs() -> None:
    """Thousands of epochs (most past the 70-half-life cut) in one array, each against the loop."""
    mix = MIXES[1]
    per_epoch = sum(p.size for p in mix)
    samples = per_epoch * np.array([[0.01, 0.999, 1.0, 1.001], [12.5, 99.9, 1000.25, 9999.5]])
    curve = error_curve(mix, samples)
    assert curve.shape == samples.shape
    for y, n in zip(curve.ravel(), samples.ravel(), strict=True):
        assert y == pytest.approx(naive_error(mix, float(n)), rel=1e-12, abs=0)


@pytest.mark.parametrize("epochs", [0.5, 1.0, 2.25, 40.0])
def test_equal_sizes_are_the_papers_equal_share_mix(epochs: float) -> None:
    utilities, half_lives, bucket = [-0.2, -0.13, -0.07], [1.0, 3.5, 8.0], 12.8e6
    pools = [
        Pool(f"b{i}", bucket, u, t)
        for i, (u, t) in enumerate(zip(utilities, half_lives, strict=True))
    ]
    n = epochs * 3 * bucket
    expected = paper_equal_share_error(utilities, half_lives, bucket, n)
    assert float(error_curve(pools, [n])[0]) == pytest.approx(expected, rel=1e-12, abs=0)


def test_plan_enumerates_prefixes_by_utility() -> None:
    pools = (REST, TOP, MID)  # input order is not utility order
    n = 2.2e7
    plan = plan_data_mix(DataMixQuery(pools, n))
    assert plan.solver == "enumeration"
    assert [c.pools for c in plan.candidates] == [
        ("top",),
        ("top", "mid"),
        ("top", "mid", "rest"),
    ]
    ranked = [TOP, MID, REST]
    for k, candidate in enumerate(plan.candidates, start=1):
        assert candidate.predicted_error == pytest.approx(
            naive_error(ranked[:k], n), rel=1e-12, abs=0
        )
    errors = [c.predicted_error for c in plan.candidates]
    assert plan.predicted_error == min(errors)
    chosen = ranked[: errors.index(min(errors)) + 1]
    assert [s.name for s in plan.pools] == [p.name for p in chosen]
    total = sum(p.size for p in chosen)
    for share, pool in zip(plan.pools, chosen, strict=True):
        assert share.samples == pytest.approx(n * pool.size / total, rel=1e-15)
        assert share.epochs == pytest.approx(n / total, rel=1e-15)
    assert math.fsum(s.samples for s in plan.pools) == pytest.approx(n, rel=1e-14)


def test_compare_at_evaluates_every_candidate_at_each_budget() -> None:
    budgets = (3e5, 1e7, 4.4e8)
    plan = plan_data_mix(DataMixQuery((TOP, MID, REST), 2e7, a=0.7, d=0.05, compare_at=budgets))
    ranked = [TOP, MID, REST]
    for k, candidate in enumerate(plan.candidates, start=1):
        expected = [naive_error(ranked[:k], n, 0.7, 0.05) for n in budgets]
        assert candidate.compare_errors == pytest.approx(expected, rel=1e-12, abs=0)
    assert plan_data_mix(DataMixQuery((TOP,), 1e6)).candidates[0].compare_errors == ()


def test_a_thousand_pools_are_planned_in_one_pass() -> None:
    """Prefix utilities are accumulated, not recomputed: 1000 candidates stay cheap."""
    pools = tuple(
        Pool(f"p{i}", 1e5 * (1 + i % 7), -0.4 + 0.0003 * i, 1 + i % 10) for i in range(1000)
    )
    plan = plan_data_mix(DataMixQuery(pools, 5e9))
    assert len(plan.candidates) == 1000
    for k in (1, 2, 500, 1000):
        assert plan.candidates[k - 1].predicted_error == pytest.approx(
            naive_error(list(pools[:k]), 5e9), rel=1e-12, abs=0
        )


def test_quality_quantity_trade_off() -> None:
    """Under one epoch of the best pool it wins alone; with it repeated many times over, adding
    the large lower-quality pool wins; the number of pools chosen never falls as budget grows."""
    pools = (TOP, MID, REST)
    small = plan_data_mix(DataMixQuery(pools, 0.5 * TOP.size))
    assert [s.name for s in small.pools] == ["top"]
    large = plan_data_mix(DataMixQuery(pools, 1e9))  # 1000 epochs of top, 18 of the union
    assert [s.name for s in large.pools] == ["top", "mid", "rest"]
    assert large.candidates[2].predicted_error < large.candidates[0].predicted_error
    chosen = [len(plan_data_mix(DataMixQuery(pools, n)).pools) for n in np.geomspace(1e5, 1e10, 60)]
    assert chosen == sorted(chosen) and chosen[0] == 1 and chosen[-1] == 3
    assert 2 in chosen  # the middle mix has a window of its own


def test_equal_utilities_keep_input_order() -> None:
    first, second = Pool("first", 2e6, -0.2, 2.0), Pool("second", 1e6, -0.2, 3.0)
    plan = plan_data_mix(DataMixQuery((first, second), 1e6))
    assert plan.candidates[0].pools == ("first",)
    swapped = plan_data_mix(DataMixQuery((second, first), 1e6))
    assert swapped.candidates[0].pools == ("second",)


def test_overtake_budget_is_where_the_curves_cross() -> None:
    n = overtake_budget([TOP], [TOP, MID], 1e5, 1e10)
    assert n is not None and 1e6 < n < 1e8
    assert naive_error([TOP, MID], n) == pytest.approx(naive_error([TOP], n), rel=1e-12)
    assert naive_error([TOP, MID], n * 0.999) > naive_error([TOP], n * 0.999)
    assert naive_error([TOP, MID], n * 1.001) < naive_error([TOP], n * 1.001)
    # A pool of the same size and lower utility never overtakes; one that already wins does so
    # from the start of the range.
    worse = Pool("worse", TOP.size, -0.1, TOP.half_life)
    assert overtake_budget([TOP], [worse], 1e5, 1e12) is None
    assert overtake_budget([worse], [TOP], 2e5, 1e12) == 2e5


def bad(index: int = 1, pool: dict[str, Any] | None = None, **query: Any) -> DataMixQuery:
    """A valid query (TOP, MID at 1e7 samples) with one pool's or the query's fields changed."""
    pools = [TOP, MID]
    if pool:
        pools[index] = replace(pools[index], **pool)
    return replace(DataMixQuery(tuple(pools), 1e7), **query)


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        (bad(pool={"size": 0}), "pools[1].size", "must be > 0, got 0"),
        (bad(0, {"size": math.inf}), "pools[0].size", "must be finite, got infinity"),
        (bad(pool={"utility": 0.0}), "pools[1].utility", "must be < 0, got 0"),
        (bad(pool={"utility": 0.3}), "pools[1].utility", "must be < 0, got 0.3"),
        (bad(pool={"utility": math.nan}), "pools[1].utility", "must be a number, got NaN"),
        (bad(pool={"half_life": -1.0}), "pools[1].half_life", "must be > 0, got -1"),
        (bad(pool={"name": ""}), "pools[1].name", "must be a non-empty string"),
        (bad(pool={"name": "top"}), "pools[1].name", "duplicate of pools[0].name"),
        (bad(samples=0.0), "samples", "must be > 0, got 0"),
        (bad(samples=math.inf), "samples", "must be finite, got infinity"),
        (bad(a=0.0), "a", "must be > 0, got 0"),
        (bad(d=-0.1), "d", "must be >= 0, got -0.1"),
        (bad(d=math.nan), "d", "must be a number, got NaN"),
        (bad(pools=()), "pools", "give at least one pool"),
        (bad(pools=tuple(Pool(str(i), 1.0, -0.1, 1.0) for i in range(1001))), "pools", "at most"),
        (bad(compare_at=(1e6, -2.0)), "compare_at[1]", "must be > 0, got -2"),
        (bad(compare_at=(1e6,) * 101), "compare_at", "at most 100"),
    ],
)
def test_bad_input_names_the_field(query: DataMixQuery, field: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_data_mix(query)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_bad_curve_input_names_the_element() -> None:
    with pytest.raises(InvalidInput) as caught:
        error_curve([TOP], [1e6, 2e6, -5.0])
    assert caught.value.field == "samples[2]"
    with pytest.raises(InvalidInput) as caught:
        error_curve([TOP], [])
    assert caught.value.field == "samples"
    with pytest.raises(InvalidInput) as caught:
        overtake_budget([TOP], [MID], 1e7, 1e6)
    assert caught.value.field == "high"


def test_overflow_is_infeasible() -> None:
    steep = Pool("steep", 1e6, -300.0, 1.0)  # (1e-5)^-300 overflows
    with pytest.raises(Infeasible, match="floating-point range"):
        plan_data_mix(DataMixQuery((steep,), 1.0))


def test_too_many_epochs_is_unsupported() -> None:
    """A half-life so long that no tail can be cut and a budget of 1e9 epochs; or 1000 pools
    each needing 1e5 epochs evaluated."""
    slow = Pool("slow", 1.0, -0.1, 1e6)
    with pytest.raises(Unsupported, match="epochs"):
        plan_data_mix(DataMixQuery((slow,), 1e9))
    with pytest.raises(Unsupported, match="epochs"):
        error_curve([slow], [1e9])
    many = tuple(Pool(f"p{i}", 1.0, -0.1, 1e4) for i in range(1000))
    with pytest.raises(Unsupported, match="1000 pools"):
        plan_data_mix(DataMixQuery(many, 1e8))


def test_fit_pool_recovers_a_grid_point() -> None:
    """Errors from the naive loop at a (b, tau) on the default grid, 0.2 to 30 epochs."""
    b, tau = float(np.linspace(-0.005, -0.5, 100)[23]), float(np.linspace(1, 10, 100)[61])
    size = 3e6
    samples = size * np.array([0.2, 0.5, 1.0, 1.5, 2.0, 3.3, 5.0, 8.0, 13.0, 30.0])
    errors = [naive_error([Pool("x", size, b, tau)], float(n), 0.5, 0.1) for n in samples]
    fit = fit_pool(samples, errors, size, a=0.5, d=0.1)
    assert (fit.utility, fit.half_life) == (b, tau)
    assert fit.sse < 1e-24
    with pytest.raises(InvalidInput) as caught:
        fit_pool(samples, errors[:-1], size)
    assert caught.value.field == "errors"


def test_enormous_half_life_is_planned_not_crashed() -> None:
    """A half-life beyond any budget is a pool that never decays within it."""
    plan = plan_data_mix(DataMixQuery((Pool("x", 1e6, -0.1, 1e307),), 3.5e6))
    never_decays = Pool("x", 1e6, -0.1, 1e9)
    assert plan.predicted_error == pytest.approx(naive_error([never_decays], 3.5e6), rel=1e-9)


def test_observed_pools_are_validated_before_fitting() -> None:
    from planner.planning.data_mix import MAX_OBSERVATIONS, ObservedPool, plan_with_observed_pools

    def observed(samples: list[float], errors: list[float]) -> ObservedPool:
        return ObservedPool("x", 1e6, tuple(samples), tuple(errors))

    too_many = MAX_OBSERVATIONS + 1
    cases = [
        (observed([1e5, 1e6, 1e7], [0.5, math.nan, 0.3]), "pools[0].observations[1].error"),
        (observed([1e5, -1.0, 1e7], [0.5, 0.4, 0.3]), "pools[0].observations[1].samples"),
        (observed([1e5, 1e6], [0.5, 0.4]), "pools[0].observations"),
        (observed([1e5] * too_many, [0.5] * too_many), "pools[0].observations"),
    ]
    for pool, field in cases:
        with pytest.raises(InvalidInput) as caught:
            plan_with_observed_pools([pool], 1e7)
        assert caught.value.field == field
