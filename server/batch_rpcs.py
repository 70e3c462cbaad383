"""Batch queries for schedulers: many plans or predictions from one law in one call.

Rows the closed form answers are computed together with numpy (planner.planning.batch). The
others take PlanComputeOptimal's own path, row by row: try_closed_form (which refuses rows
without an answer), then GP solves through the batched solver, or repeated-data solves in the
process pool, gathered concurrently; so every row's answer is the single RPC's. A row without
an answer refuses the whole request, naming the row (the first in order). Large arrays are
computed in a thread, so the event loop keeps serving other calls meanwhile.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from google.protobuf.message import Message
from numpy.typing import NDArray

from planner.errors import Infeasible, InvalidInput, PlannerError
from planner.laws import DataConstrainedLaw
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import batch, compute_optimal
from planner.planning.batch import BatchPlans, ClosedFormRows
from planner.planning.compute_optimal import Caps, ComputeOptimalPlan, ComputeOptimalQuery
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.validation import positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping, wire
from server.errors import translate_errors
from server.law_cache import ResolvedLaw
from server.rpc_base import Context, RpcBase
from server.store.records import LawRecord

Array = NDArray[np.float64]
T = TypeVar("T")
M = TypeVar("M", bound=Message)

# Rows (plans or points) per request; the request message size (PLANNER_MAX_MESSAGE_BYTES)
# may bind first.
MAX_BATCH_ROWS = 1_000_000
# Rows answered by a solver (a GP ~0.1 ms, a repeated-data solve 0.4-6 ms, in the worker
# processes every caller shares); more would hold them for many seconds.
MAX_SOLVED_ROWS = 10_000
# Repeated-data rows per pool task, at most: few process hops, yet every worker gets a share.
REPEATED_CHUNK = 32
# Array elements (rows, or points x ensemble rows) computed on the event loop; larger work
# goes to a thread (numpy releases the GIL) rather than stall other calls for milliseconds.
INLINE_ELEMENTS = 20_000

PlansMessage = pb.PlanComputeOptimalBatchResponse
PredictionsMessage = pb.PredictBatchResponse


@dataclass(frozen=True)
class _Goal:
    """The request's rows: budgets (FLOPs) or loss targets, validated."""

    field: str
    values: Array

    def goal(self, row: int) -> tuple[float | None, float | None]:
        """(compute, target_loss) of one row, as a single request's goal."""
        value = float(self.values[row])
        return (value, None) if self.field == "budgets" else (None, value)

    def query(self, law: ChinchillaLaw, row: int, caps: Caps, k: float) -> ComputeOptimalQuery:
        compute, target = self.goal(row)
        return ComputeOptimalQuery(law, compute, target, caps, k)

    def repeated_query(
        self, law: DataConstrainedLaw, row: int, caps: Caps, k: float
    ) -> RepeatedDataQuery:
        assert caps.unique_tokens is not None
        compute, target = self.goal(row)
        return RepeatedDataQuery(law, caps.unique_tokens, compute, target, caps, k)


@dataclass(frozen=True)
class _FirstPass:
    """The closed form over every row, the rows it left that try_closed_form answered, and
    the queries left for the GP, by row."""

    closed: ClosedFormRows
    plans: dict[int, ComputeOptimalPlan]
    solver_queries: dict[int, ComputeOptimalQuery]


class BatchRpcs(RpcBase):
    """PlanComputeOptimalBatch, PredictBatch."""

    @translate_errors
    async def PlanComputeOptimalBatch(
        self, request: pb.PlanComputeOptimalBatchRequest, context: Context
    ) -> pb.PlanComputeOptimalBatchResponse:
        goal = _goal(request)
        caps = mapping.caps(request)
        resolved = await self._resolve(request.law)
        if isinstance(resolved.law, DataConstrainedLaw) and caps.unique_tokens is not None:
            plans = await self._repeated_plans(resolved.law, resolved, goal, caps)
        else:
            plans = await self._chinchilla_plans(resolved, goal, caps)
        return _plans_message(plans, resolved.record)

    async def _chinchilla_plans(self, resolved: ResolvedLaw, goal: _Goal, caps: Caps) -> BatchPlans:
        law = resolved.law.as_chinchilla()
        first = await _off_loop(
            goal.values.size, _first_pass, goal, law, caps, resolved.flops_per_param_token
        )
        rows = list(first.solver_queries)
        outcomes = await asyncio.gather(
            *(self.solver.solve(query) for query in first.solver_queries.values()),
            return_exceptions=True,
        )
        plans = first.plans | _answers(goal, rows, outcomes)
        return await _off_loop(
            goal.values.size, batch.assemble, goal.values.size, plans, first.closed
        )

    async def _repeated_plans(
        self, law: DataConstrainedLaw, resolved: ResolvedLaw, goal: _Goal, caps: Caps
    ) -> BatchPlans:
        """Repeated data on a data_constrained law: every row is a bounded scalar solve (no
        closed form), as PlanComputeOptimal's, in chunks on the worker processes."""
        count = goal.values.size
        _check_solved_rows(goal, count)
        k = resolved.flops_per_param_token
        queries = [goal.repeated_query(law, row, caps, k) for row in range(count)]
        size = max(1, min(REPEATED_CHUNK, math.ceil(count / self.pool.processes)))
        chunks = [queries[start : start + size] for start in range(0, count, size)]
        solved = await self._in_lanes(chunks)
        outcomes = [outcome for chunk in solved for outcome in chunk]
        return batch.assemble(count, _answers(goal, range(count), outcomes))

    async def _in_lanes(
        self, chunks: list[list[RepeatedDataQuery]]
    ) -> list[list[ComputeOptimalPlan | Exception]]:
        """Each chunk solved in the pool, at most one per worker in flight: other callers' solves
        queue behind one chunk, not the whole request (and cancelling stops the rest)."""
        solved: list[list[ComputeOptimalPlan | Exception]] = [[] for _ in chunks]
        order = iter(range(len(chunks)))  # shared: each lane takes the next chunk

        async def lane() -> None:
            for index in order:
                solved[index] = await self.pool.run(batch.solve_each, solve_repeated, chunks[index])

        await asyncio.gather(*(lane() for _ in range(min(self.pool.processes, len(chunks)))))
        return solved

    @translate_errors
    async def PredictBatch(
        self, request: pb.PredictBatchRequest, context: Context
    ) -> pb.PredictBatchResponse:
        """Predict per point; with_band adds Predict's BAND interval per point (low and high
        NaN at a point where fewer than MIN_ROWS ensemble rows give a finite loss, where
        Predict returns no interval)."""
        params, tokens, unique = _points(request)
        resolved = await self._resolve(request.law)
        ensemble = _band_ensemble(resolved) if request.with_band else None
        losses = await _off_loop(
            params.size, batch.predict_losses, resolved.law, params, tokens, unique
        )
        _check_finite(losses, params, tokens)
        pieces = [wire.packed_doubles(PredictionsMessage, "loss", losses)]
        if ensemble is not None:
            low, high = await _off_loop(
                params.size * ensemble.shape[0],
                batch.loss_bands,
                resolved.law,
                ensemble,
                params,
                tokens,
                unique,
            )
            pieces.append(wire.packed_doubles(PredictionsMessage, "low", low))
            pieces.append(wire.packed_doubles(PredictionsMessage, "high", high))
        return _merged(PredictionsMessage(law=mapping.law_summary(resolved.record)), *pieces)


# -- validation --------------------------------------------------------------------------------


def _points(request: pb.PredictBatchRequest) -> tuple[Array, Array, Array | None]:
    """(params, tokens, unique tokens or None), one value of each per point."""
    params = _column("params", request.params)
    if len(request.tokens) != params.size:
        raise InvalidInput(
            "tokens", f"has {len(request.tokens)} values; give one per params ({params.size})"
        )
    if request.unique_tokens and len(request.unique_tokens) != params.size:
        raise InvalidInput(
            "unique_tokens",
            f"has {len(request.unique_tokens)} values; give none or one per params ({params.size})",
        )
    tokens = _column("tokens", request.tokens)
    unique = _column("unique_tokens", request.unique_tokens) if request.unique_tokens else None
    return params, tokens, unique


def _band_ensemble(resolved: ResolvedLaw) -> Array:
    if resolved.ensemble is None:
        record = resolved.record
        raise Infeasible(
            f"{record.family} {record.form} v{record.version} has no bootstrap ensemble, so no "
            "band; fit it with bootstrap > 0, or ask without with_band",
            field="with_band",
        )
    return resolved.ensemble


def _goal(request: pb.PlanComputeOptimalBatchRequest) -> _Goal:
    if request.budgets and request.target_losses:
        raise InvalidInput("target_losses", "give either budgets or target_losses, not both")
    if not request.budgets and not request.target_losses:
        raise InvalidInput("budgets", "is empty; give budgets (FLOPs) or target_losses")
    if request.budgets:
        return _Goal("budgets", _column("budgets", request.budgets))
    return _Goal("target_losses", _column("target_losses", request.target_losses))


def _column(field: str, values: Sequence[float]) -> Array:
    """A non-empty repeated double of at most MAX_BATCH_ROWS values, each finite and > 0."""
    if not values:
        raise InvalidInput(field, "is empty; give at least one value")
    if len(values) > MAX_BATCH_ROWS:
        raise InvalidInput(
            field, f"has {len(values):,} values; at most {MAX_BATCH_ROWS:,} per request"
        )
    array = np.asarray(values, dtype=np.float64)  # upb hands over its buffer: no per-item cost
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if bad.size:
        row = int(bad[0])
        positive(f"{field}[{row}]", float(array[row]))  # raises, worded as the single RPCs
    return array


def _check_solved_rows(goal: _Goal, count: int) -> None:
    if count > MAX_SOLVED_ROWS:
        raise InvalidInput(
            goal.field,
            f"{count:,} rows need a solver (a cap binds there, or the law models repeated "
            f"data); at most {MAX_SOLVED_ROWS:,} per request, split the request",
        )


def _check_finite(losses: Array, params: Array, tokens: Array) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        row = int(bad[0])
        raise Infeasible(
            f"params[{row}]: the predicted loss is outside floating-point range for "
            f"N = {params[row]:g}, D = {tokens[row]:g}",
            field=f"params[{row}]",
        )


# -- rows --------------------------------------------------------------------------------------


def _first_pass(goal: _Goal, law: ChinchillaLaw, caps: Caps, k: float) -> _FirstPass:
    """The closed form over all rows, then PlanComputeOptimal's inline step for the rows it
    left: a closed-form plan, a refusal (raised, naming the row), or a query for the GP."""
    if goal.field == "budgets":
        closed = batch.budget_rows(law, goal.values, caps, k)
    else:
        closed = batch.target_rows(law, goal.values, caps, k)
    plans: dict[int, ComputeOptimalPlan] = {}
    queries: dict[int, ComputeOptimalQuery] = {}
    for row in np.flatnonzero(~closed.answered).tolist():
        query = goal.query(law, row, caps, k)
        with _naming_row(goal, row):
            plan = compute_optimal.try_closed_form(query)
        if plan is not None:
            plans[row] = plan
            continue
        queries[row] = query
        # Checked as rows are found, so a request of many capped rows is refused at once.
        _check_solved_rows(goal, len(queries))
    return _FirstPass(closed, plans, queries)


def _answers(
    goal: _Goal, rows: Iterable[int], outcomes: Sequence[ComputeOptimalPlan | BaseException]
) -> dict[int, ComputeOptimalPlan]:
    """Plans by row; the first row (in order) that failed refuses the request."""
    plans: dict[int, ComputeOptimalPlan] = {}
    for row, outcome in zip(rows, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            with _naming_row(goal, row):
                raise outcome
        plans[row] = outcome
    return plans


@contextmanager
def _naming_row(goal: _Goal, row: int) -> Iterator[None]:
    """A domain error of one row, re-raised naming the row (`budgets[3]`) as its field."""
    try:
        yield
    except PlannerError as error:
        field = f"{goal.field}[{row}]"
        if isinstance(error, InvalidInput):
            raise InvalidInput(field, error.message) from error
        raise type(error)(f"{field}: {error.message}", field=field) from error


async def _off_loop(elements: int, fn: Callable[..., T], *args: object) -> T:
    """fn(*args), in a thread when it handles more than INLINE_ELEMENTS array elements."""
    if elements <= INLINE_ELEMENTS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


# -- answers -----------------------------------------------------------------------------------


def _plans_message(plans: BatchPlans, record: LawRecord) -> pb.PlanComputeOptimalBatchResponse:
    return _merged(
        PlansMessage(law=mapping.law_summary(record)),
        wire.packed_doubles(PlansMessage, "params", plans.params),
        wire.packed_doubles(PlansMessage, "tokens", plans.tokens),
        wire.packed_doubles(PlansMessage, "loss", plans.loss),
        wire.packed_doubles(PlansMessage, "flops", plans.flops),
        wire.repeated_strings(PlansMessage, "binding", plans.binding),
        wire.repeated_strings(PlansMessage, "solver", plans.solver),
    )


def _merged(message: M, *fields: bytes) -> M:
    """`message` with each field's wire bytes merged in (one by one: no joined copy)."""
    for field in fields:
        message.MergeFromString(field)
    return message
