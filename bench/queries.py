"""In-process latency of the planning queries (issue 4), and the compiled-once GPs against the
same problem built with cvxpy per request.

Rows: PlanInference (GP compiled once + exact scalar finish) vs a fresh `gp=True` problem per
request; AllocateBudget (GP compiled once per job count + water-filling finish) vs a fresh
problem per request; the closed forms (over-training, sparsity at a fixed final sparsity); the
scalar sparsity path (dense kernels, deployed size fixed); the data-mix enumeration; and the
ensemble bands (200 rows solved one by one) that plans with a fitted law carry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from bench.domain import log
from bench.stats import Summary, jitter, summarize, time_calls
from planner.laws import ChinchillaLaw, OvertrainingLaw
from planner.planning import allocation
from planner.planning.allocation import AllocationQuery, Job
from planner.planning.data_mix import DataMixQuery, Pool, plan_data_mix
from planner.planning.inference import InferenceQuery, plan_inference
from planner.planning.overtraining import OvertrainingQuery, plan_overtraining
from planner.planning.sparsity import SparsityQuery, plan_sparsity
from planner.uncertainty import allocation_intervals, inference_intervals, sparsity_intervals

# LAWS.md §11.5 (Sardana), §11.2 (Epoch), §11.6 (Gadre RedPajama).
SARDANA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)
EPOCH = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
HOFFMANN = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
REDPAJAMA = OvertrainingLaw(E=1.8366, a=212.2361, b=366.6872, eta=0.13643)
SARDANA_TARGET = 2.0452797  # the 13B Chinchilla-optimal loss of §11.5
UNIT = 1e9


@dataclass(frozen=True)
class QueryRow:
    query: str
    path: str
    latency: Summary


@dataclass(frozen=True)
class QueryBench:
    rows: list[QueryRow]
    # (query, compiled-once p50, built-per-request p50) for the GP-backed queries.
    ratios: list[tuple[str, float, float]]


def _counts(quick: bool) -> tuple[int, int, float]:
    """(fast calls, slow calls, seconds per loop)."""
    return (200, 20, 0.5) if quick else (3_000, 200, 5.0)


def _naive_inference(index: int) -> None:
    """PlanInference the naive way: a fresh cvxpy GP (N, D in units of 1e9) built and solved."""
    target = SARDANA_TARGET * jitter(index, 1e-4)
    law, d_inf = SARDANA, 2e12
    n, d = cp.Variable(pos=True), cp.Variable(pos=True)
    headroom = target - law.E
    loss = (law.A * UNIT**-law.alpha / headroom) * n**-law.alpha + (
        law.B * UNIT**-law.beta / headroom
    ) * d**-law.beta
    # Lifetime FLOPs in units of 1e22, so the objective is of order one.
    cost = (6 * UNIT * UNIT / 1e22) * n * d + (2 * UNIT * d_inf / 1e22) * n
    problem = cp.Problem(cp.Minimize(cost), [loss <= 1])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(gp=True, solver=cp.CLARABEL)


def _naive_allocation(jobs: list[Job], total: float) -> Callable[[int], None]:
    """AllocateBudget the naive way: a fresh cvxpy GP over (N_i, D_i) per request."""

    def solve(index: int) -> None:
        budget = total * jitter(index)
        n = cp.Variable(len(jobs), pos=True)
        d = cp.Variable(len(jobs), pos=True)
        terms = []
        for i, job in enumerate(jobs):
            law = job.law
            terms.append(job.weight * law.A * UNIT**-law.alpha * n[i] ** -law.alpha)
            terms.append(job.weight * law.B * UNIT**-law.beta * d[i] ** -law.beta)
        spend = cp.sum(
            cp.hstack([(6 * UNIT * UNIT / budget) * n[i] * d[i] for i in range(len(jobs))])
        )
        problem = cp.Problem(cp.Minimize(cp.sum(cp.hstack(terms))), [spend <= 1])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            problem.solve(gp=True, solver=cp.CLARABEL)

    return solve


def _time(
    rows: list[QueryRow],
    query: str,
    path: str,
    call: Callable[[int], Any],
    count: int,
    limit: float,
) -> Summary:
    log(f"queries: {query}, {path}")
    summary = summarize(time_calls(call, count, limit, warmup=3))
    rows.append(QueryRow(query, path, summary))
    return summary


def run(quick: bool) -> QueryBench:
    fast, slow, limit = _counts(quick)
    rows: list[QueryRow] = []
    ratios: list[tuple[str, float, float]] = []

    def inference(index: int) -> None:
        target = SARDANA_TARGET * jitter(index, 1e-4)
        plan_inference(InferenceQuery(SARDANA, 2e12, target_loss=target))

    compiled = _time(
        rows, "PlanInference", "GP compiled once + scalar finish", inference, fast, limit
    )
    naive = _time(
        rows, "PlanInference", "cvxpy gp=True built per request", _naive_inference, slow, limit
    )
    ratios.append(("PlanInference", compiled.median, naive.median))

    jobs = [
        Job("a", HOFFMANN, weight=1.0),
        Job("b", EPOCH, weight=2.0),
        Job("c", SARDANA, weight=0.5),
    ]

    def allocate(index: int) -> None:
        allocation.allocate(AllocationQuery(tuple(jobs), 1e24 * jitter(index)))

    compiled = _time(
        rows, "AllocateBudget (3 jobs)", "GP compiled once + finish", allocate, fast, limit
    )
    naive = _time(
        rows,
        "AllocateBudget (3 jobs)",
        "cvxpy gp=True built per request",
        _naive_allocation(jobs, 1e24),
        slow,
        limit,
    )
    ratios.append(("AllocateBudget (3 jobs)", compiled.median, naive.median))

    _time(
        rows,
        "PlanOvertraining",
        "closed form",
        lambda i: plan_overtraining(
            OvertrainingQuery(REDPAJAMA, compute=1e22 * jitter(i), multiplier=100.0)
        ),
        fast,
        limit,
    )
    _time(
        rows,
        "PlanSparsity",
        "closed form (final sparsity 0.75)",
        lambda i: plan_sparsity(SparsityQuery(HOFFMANN, 1e23 * jitter(i), final_sparsity=0.75)),
        fast,
        limit,
    )
    _time(
        rows,
        "PlanSparsity",
        "scan + bounded scalar (deployed size, dense kernels)",
        lambda i: plan_sparsity(
            SparsityQuery(HOFFMANN, 1e23 * jitter(i), final_params=1e9, sparse_flops=False)
        ),
        fast,
        limit,
    )
    pools = tuple(Pool(f"decile-{k}", 1.28e7, -0.3 + 0.02 * k, 1.0 + 0.5 * k) for k in range(10))
    _time(
        rows,
        "PlanDataMix (10 pools, ~80 epochs)",
        "enumeration of top-K unions",
        lambda i: plan_data_mix(DataMixQuery(pools, 1e10 * jitter(i))),
        fast,
        limit,
    )
    ensemble = _ensemble(200)
    _time(
        rows,
        "PlanInference bands (200 rows)",
        "scalar finish per row",
        lambda i: inference_intervals(
            ensemble, InferenceQuery(EPOCH, 1e13 * jitter(i), target_loss=2.2)
        ),
        max(3, slow // 10),
        limit,
    )
    _time(
        rows,
        "PlanSparsity bands (200 rows)",
        "closed form per row",
        lambda i: sparsity_intervals(
            ensemble, SparsityQuery(EPOCH, 1e23 * jitter(i), final_sparsity=0.5)
        ),
        max(3, slow // 10),
        limit,
    )
    _time(
        rows,
        "AllocateBudget bands (200 rows, 3 jobs)",
        "whole split re-solved per row",
        lambda i: allocation_intervals(
            [ensemble, None, None], AllocationQuery(tuple(jobs), 1e24 * jitter(i))
        ),
        max(3, slow // 10),
        limit,
    )
    return QueryBench(rows, ratios)


def _ensemble(rows: int) -> np.ndarray:
    """Rows scattered around Epoch's fit, about as wide as its bootstrap."""
    rng = np.random.default_rng(7)
    centre = np.array([1.8172, 482.01, 2085.43, 0.3478, 0.3658])
    noise = rng.normal(size=(rows, 5)) * np.array([0.025, 0.2, 0.4, 0.015, 0.02])
    vectors = centre * np.exp(noise)
    vectors[:, 0] = centre[0] * (1 + noise[:, 0])
    vectors[:, 3:] = centre[3:] + noise[:, 3:]
    return vectors
