"""PlanDataMix and PlanSparsity on a real server, against LAWS.md §5/§6/§11.9 and independent
computations (the authors' epoch loop; the Chinchilla closed form with N read as N_avg)."""

from __future__ import annotations

import math

import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import DataPool
from planner.planning.data_mix import Pool
from tests.unit.test_data_mix import naive_error

# LAWS.md §11.2 (Hoffmann, rounded), here read as a Jin law: N is the average parameter count.
JIN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def test_single_pool_reference_value(client: PlannerClient) -> None:
    """§11.9: a = 1, d = 0.1, S = 12.8M, b = -0.12, tau = 2 -> y(2.56e7) = 0.621022."""
    plan = client.plan_data_mix([DataPool("bucket", 12.8e6, -0.12, 2.0)], 2.56e7, a=1.0, d=0.1)
    assert plan.predicted_error == pytest.approx(0.621022, abs=5e-7)
    assert [(p.name, p.samples, p.epochs) for p in plan.pools] == [("bucket", 2.56e7, 2.0)]
    assert plan.solver == "enumeration"


def test_filtering_wins_small_and_loses_large(client: PlannerClient) -> None:
    pools = [
        DataPool("rest", 5e7, -0.15, 6.0),
        DataPool("top", 1e6, -0.3, 1.0),
        DataPool("mid", 4e6, -0.2, 2.0),
    ]
    plan = client.plan_data_mix(pools, 5e5, compare_at=[1e9])
    # Candidates are prefixes by utility, whatever the input order.
    assert [c.pools for c in plan.candidates] == [["top"], ["top", "mid"], ["top", "mid", "rest"]]
    small = [c.predicted_error for c in plan.candidates]
    large = [c.compare_errors[0] for c in plan.candidates]
    assert min(range(3), key=small.__getitem__) == 0  # half an epoch of the best pool: top only
    assert min(range(3), key=large.__getitem__) == 2  # 1000 epochs of top: take everything
    for candidate in plan.candidates:
        mix = [
            Pool(p.name, p.size, p.utility, p.half_life) for p in pools if p.name in candidate.pools
        ]
        assert candidate.predicted_error == pytest.approx(naive_error(mix, 5e5), rel=1e-12)
        assert candidate.compare_errors[0] == pytest.approx(naive_error(mix, 1e9), rel=1e-12)


@pytest.mark.parametrize(
    ("pools", "samples", "field"),
    [
        ([DataPool("x", 0.0, -0.1, 1.0)], 1e6, "pools[0].size"),
        ([DataPool("x", 1e6, 0.2, 1.0)], 1e6, "pools[0].utility"),
        ([DataPool("x", 1e6, -0.1, math.nan)], 1e6, "pools[0].half_life"),
        ([DataPool("x", 1e6, -0.1, 1.0)], -5.0, "samples"),
        ([], 1e6, "pools"),
        ([DataPool("x", 1e6, -0.1, 1.0), DataPool("x", 1e6, -0.2, 1.0)], 1e6, "pools[1].name"),
        ([DataPool("x" * 101, 1e6, -0.1, 1.0)], 1e6, "pools[0].name"),
    ],
)
def test_data_mix_refusals(
    client: PlannerClient, pools: list[DataPool], samples: float, field: str
) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.plan_data_mix(pools, samples)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == [field], caught.value


def test_sparsity_plan_reads_n_as_the_average(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.put_law(family_name, "sparse_avg_params", JIN)
    plan = client.plan_sparsity(family_name, 1e23, final_sparsity=0.75)
    # N_avg is the Chinchilla optimum of §11.2 at 1e23 (1.45983e10, 1.14168e12, 2.005010).
    assert plan.average_params == pytest.approx(1.45983e10, rel=1e-5)
    assert plan.tokens == pytest.approx(1.14168e12, rel=1e-5)
    assert plan.loss == pytest.approx(2.005010, abs=5e-7)
    # §11.9: s_f = 0.75 -> N_avg / N_dense = 0.53125; N_final = N_dense (1 - s_f).
    assert plan.average_params / plan.dense_params == pytest.approx(0.53125, rel=1e-12)
    assert plan.final_params == pytest.approx(plan.dense_params * 0.25, rel=1e-12)
    fractions = [f for f, _ in plan.schedule]
    assert fractions == pytest.approx([i / 10 for i in range(11)])
    middle = dict(plan.schedule)[0.5]
    assert middle == pytest.approx(0.75 * (1 - 0.5**3), rel=1e-12)  # halfway through pruning
    dense = plan.dense_same_size
    assert dense.params == pytest.approx(plan.final_params, rel=1e-12)
    expected = 1.69 + 406.4 * dense.params**-0.34 + 410.7 * (1e23 / (6 * dense.params)) ** -0.28
    assert dense.loss == pytest.approx(expected, rel=1e-12) and dense.loss > plan.loss
    assert plan.law.form == "sparse_avg_params" and plan.solver == "closed_form"


def test_sparsity_for_a_deployed_size_falls_back_to_the_chinchilla_law(
    client: PlannerClient,
) -> None:
    """The published Epoch family has no sparse law: its chinchilla law answers (Jin: dense and
    sparse runs of equal N_avg share one law)."""
    plan = client.plan_sparsity("chinchilla-epoch-2024", 5.76e23, final_params=2e10)
    assert plan.law.form == "chinchilla"
    assert plan.final_params == pytest.approx(2e10, rel=1e-9)
    # With sparse FLOPs the average size is the Chinchilla N_opt: §11.2 Epoch at 5.76e23.
    assert plan.average_params == pytest.approx(7.22487e10, rel=1e-4)
    ratio = plan.average_params / plan.final_params
    assert plan.final_sparsity == pytest.approx((ratio - 1) / (ratio - 0.625), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"final_sparsity": 1.0}, "INVALID_ARGUMENT", "final_sparsity"),
        ({"final_sparsity": -0.1}, "INVALID_ARGUMENT", "final_sparsity"),
        ({"final_params": math.inf}, "INVALID_ARGUMENT", "final_params"),
        (
            {"final_sparsity": 0.5, "prune_start": 0.8, "prune_end": 0.5},
            "INVALID_ARGUMENT",
            "prune_end",
        ),
        (
            {"final_sparsity": 0.5, "prunable_fraction": 0.0},
            "INVALID_ARGUMENT",
            "prunable_fraction",
        ),
        ({}, "INVALID_ARGUMENT", "target"),
    ],
)
def test_sparsity_refusals(
    client: PlannerClient, kwargs: dict[str, float], code: str, field: str
) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.plan_sparsity("chinchilla-epoch-2024", 1e22, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value
    fields = [v.field for v in caught.value.violations]
    assert fields == [field], caught.value


def test_pool_utility_and_half_life_fitted_from_its_runs(client: PlannerClient) -> None:
    """Observations made by the authors' loop at a grid point (b = -0.2, tau = 3) are fitted back
    to it, and the plan is the one with those values given."""
    utility, half_life = -0.005 - 39 * 0.495 / 99, 1 + 22 * 9 / 99  # grid points of §5
    truth = Pool("crawl", 2e6, utility, half_life)
    seen = [5e5, 2e6, 6e6, 2e7, 6e7]
    observations = [(n, naive_error([truth], n)) for n in seen]
    top = DataPool("top", 1e6, -0.3, 1.0)
    fitted = client.plan_data_mix([top, DataPool("crawl", 2e6, observations=observations)], 1e8)
    [fit] = fitted.fitted
    assert fit.name == "crawl"
    assert (fit.utility, fit.half_life) == pytest.approx((utility, half_life), rel=1e-9)
    assert fit.squared_error < 1e-20
    given = client.plan_data_mix([top, DataPool("crawl", 2e6, utility, half_life)], 1e8)
    assert fitted.predicted_error == pytest.approx(given.predicted_error, rel=1e-9)
    with pytest.raises(PlannerClientError) as caught:
        client.plan_data_mix([DataPool("x", 2e6, observations=observations[:2])], 1e8)
    assert [v.field for v in caught.value.violations] == ["pools[0].observations"]
    with pytest.raises(PlannerClientError) as caught:
        client.plan_data_mix([DataPool("x", 2e6, -0.1, 1.0, observations=observations)], 1e8)
    assert [v.field for v in caught.value.violations] == ["pools[0].observations"]
