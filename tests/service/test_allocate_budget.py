"""AllocateBudget on a real server with the published families, against an independent
water-filling computation from the Chinchilla frontier (LAWS.md §1.7)."""

from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq

from clients import PlannerClient, PlannerClientError
from clients.results import BudgetJob

# LAWS.md §11.2: Epoch's printed values; §11.5: Sardana's set.
EPOCH = "chinchilla-epoch-2024"
LAWS = {
    "chinchilla-epoch-2024": (1.8172, 482.01, 2085.43, 0.3478, 0.3658),
    "inference-sardana-2023": (1.69, 406.4, 410.7, 0.336, 0.283),
}


def frontier(family: str) -> tuple[float, float]:
    """(K, gamma) with L*(C) = E + K (C/6)^-gamma on the Chinchilla frontier."""
    _, a, b, alpha, beta = LAWS[family]
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    return a * g**-alpha + b * g**beta, alpha * beta / (alpha + beta)


def water_fill(jobs: list[tuple[str, float]], total: float) -> list[float]:
    """Split where w_i dL_i*/dC_i is equal for all jobs and the shares add up to the total."""

    def share(family: str, weight: float, mu: float) -> float:
        k, gamma = frontier(family)
        # w gamma K / 6 (C/6)^-(1+gamma) = mu
        return 6 * (weight * gamma * k / (6 * mu)) ** (1 / (1 + gamma))

    def excess(log_mu: float) -> float:
        return sum(share(f, w, math.exp(log_mu)) for f, w in jobs) / total - 1

    log_mu = brentq(excess, -200, 50, xtol=1e-14)
    return [share(f, w, math.exp(log_mu)) for f, w in jobs]


def test_two_families_share_a_budget(client: PlannerClient) -> None:
    jobs = [("chinchilla-epoch-2024", 1.0), ("inference-sardana-2023", 3.0)]
    result = client.allocate_budget(
        [BudgetJob(f"job-{i}", family, weight) for i, (family, weight) in enumerate(jobs)], 1e24
    )
    expected = water_fill(jobs, 1e24)
    assert [j.flops for j in result.jobs] == pytest.approx(expected, rel=1e-6)
    assert sum(j.flops for j in result.jobs) == pytest.approx(1e24, rel=1e-9)
    # The dual: equal marginal values across unconstrained jobs, equal to the budget's.
    for job in result.jobs:
        assert job.marginal_value == pytest.approx(result.marginal_value, rel=1e-6)
        assert job.binding == []
    # Each job is compute-optimal at its share: §1.7 closed form.
    for job, (family, _) in zip(result.jobs, jobs, strict=True):
        e, a, b, alpha, beta = LAWS[family]
        g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
        assert job.params == pytest.approx(g * (job.flops / 6) ** (beta / (alpha + beta)), rel=1e-6)
        assert job.loss == pytest.approx(e + a * job.params**-alpha + b * job.tokens**-beta)
    assert result.budget_binding and result.solver.startswith("gp/")


def test_bounds_pin_jobs_and_split_the_marginal_values(client: PlannerClient) -> None:
    free = client.allocate_budget(
        [BudgetJob("a", "chinchilla-epoch-2024"), BudgetJob("b", "inference-sardana-2023")], 1e24
    )
    cap = free.jobs[1].flops / 2
    result = client.allocate_budget(
        [
            BudgetJob("a", "chinchilla-epoch-2024"),
            BudgetJob("b", "inference-sardana-2023", max_flops=cap),
        ],
        1e24,
    )
    a, b = result.jobs
    assert b.flops == pytest.approx(cap, rel=1e-9) and b.binding == ["max_flops"]
    assert a.flops == pytest.approx(1e24 - cap, rel=1e-9)
    # A job held below its share would gain more per FLOP than the budget's marginal value.
    assert b.marginal_value > result.marginal_value
    assert a.marginal_value == pytest.approx(result.marginal_value, rel=1e-6)


@pytest.mark.parametrize(
    ("jobs", "compute", "code", "where"),
    [
        ([BudgetJob("a", EPOCH, weight=-1.0)], 1e23, "INVALID_ARGUMENT", "jobs[0].weight"),
        ([BudgetJob("a", EPOCH, weight=math.nan)], 1e23, "INVALID_ARGUMENT", "jobs[0].weight"),
        ([], 1e23, "INVALID_ARGUMENT", "jobs"),
        ([BudgetJob("a", "chinchilla-epoch-2024")], 0.0, "INVALID_ARGUMENT", "budget.flops"),
        (
            [BudgetJob("a", "chinchilla-epoch-2024"), BudgetJob("a", "inference-sardana-2023")],
            1e23, "INVALID_ARGUMENT", "jobs[1].name",
        ),
        (
            [
                BudgetJob("a", "chinchilla-epoch-2024", min_flops=8e22),
                BudgetJob("b", "inference-sardana-2023", min_flops=5e22),
            ],
            1e23, "FAILED_PRECONDITION", "budget",
        ),
        ([BudgetJob("a", "no-such-family")], 1e23, "NOT_FOUND", "jobs[0].law.family"),
        ([BudgetJob("a", "Bad Name")], 1e23, "INVALID_ARGUMENT", "jobs[0].law.family"),
        ([BudgetJob("a", EPOCH, form="nope")], 1e23, "INVALID_ARGUMENT", "jobs[0].law.form"),
    ],
)  # fmt: skip
def test_refusals(
    client: PlannerClient, jobs: list[BudgetJob], compute: float, code: str, where: str
) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.allocate_budget(jobs, compute)
    assert caught.value.code == code, caught.value
    assert [v.field for v in caught.value.violations] == [where], caught.value
