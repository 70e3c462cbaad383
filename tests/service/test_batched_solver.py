"""Batched solves in the pool give each caller its own answer or its own error."""

from __future__ import annotations

import asyncio

from planner.errors import Infeasible
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery, solve
from server.batched_solver import BatchedSolver
from server.solver_pool import SolverPool
from tests.conftest import EPOCH


def test_concurrent_queries_each_get_their_answer() -> None:
    good = [
        ComputeOptimalQuery(EPOCH, compute=1e25 * (1 + i / 10), caps=Caps(max_params=1e11))
        for i in range(40)
    ]
    bad = ComputeOptimalQuery(EPOCH, compute=1e25, caps=Caps(max_params=1e11, max_tokens=1e12))
    queries = [*good[:20], bad, *good[20:]]

    async def scenario() -> list[object]:
        pool = SolverPool(1)
        try:
            await pool.warm()
            solver = BatchedSolver(pool, max_batch=8)
            return await asyncio.gather(*(solver.solve(q) for q in queries), return_exceptions=True)
        finally:
            pool.shutdown()

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[20], Infeasible)
    assert "raise a cap" in outcomes[20].message
    answers = outcomes[:20] + outcomes[21:]
    for query, answer in zip(good, answers, strict=True):
        expected = solve(query)
        assert answer == expected
