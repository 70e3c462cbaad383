"""PredictCurve and PlanSchedule: loss curves of learning-rate schedules under a family's
loss-curve law (form multi_power or lr_annealing), and schedules that law prefers.

A request's step s is the loss after s steps: the laws' index s - 1 (planner.curves counts steps
from 0). Decoding a schedule (up to a million rates), predicting (about 40-60 ms for 1,000 points
of a 100,000-step schedule) and searching run in worker processes: the plan workers for
predictions and searches of up to about a second (measured against a thread: the same
throughput, and a thread's GIL share doubled the event loop's worst lag); longer work (long
schedules, see the step limits below) on the fit workers, which stop at once when the caller's
deadline passes but run at a lower priority. Every plan worker imports the
work (server/curve_work.py) when the pool warms up.
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np

from planner.curves.lr_annealing import AnnealingLaw
from planner.curves.multi_power import MultiPowerLaw
from planner.curves.optimize import (
    CurveLaw,
    ScheduleProblem,
)
from planner.curves.schedules import DECAY_SHAPES, MAX_STEPS, DecayShape
from planner.errors import InvalidInput
from planner.forms import parse_any_law, require_kind
from planner_api.v1 import planner_pb2 as pb
from server import mapping
from server.curve_work import Curve, SchedulePlan, Steps, plan_schedule, predict_schedule
from server.errors import translate_errors
from server.fit_pool import FitPool
from server.law_cache import FreshEntries
from server.rpc_base import Context, RpcBase
from server.schedule_decoding import schedule_name
from server.solver_pool import SolverPool
from server.store.records import LawRecord

MAX_SCHEDULES = 16
MAX_POINTS = 10_000
DEFAULT_CURVE_POINTS = 1_000
DEFAULT_PLAN_POINTS = 200
MODES = ("wsd_decay", "optimal")
# Beyond these many steps a search takes over ~1 s (measured: a WSD search ~0.6 s at 200,000
# steps, 2.4 s at a million; the optimal schedule ~0.9 s at 50,000, 22 s at a million) and goes
# to the fit workers.
LONG_SEARCH_STEPS = {"wsd_decay": 200_000, "optimal": 50_000}
# A prediction of a longer schedule takes up to ~1 s (10,000 points of a million steps).
LONG_PREDICTION_STEPS = 200_000


# --- request checks and messages ---------------------------------------------------------------


def _points(value: int, default: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= MAX_POINTS:
        raise InvalidInput(
            "points", f"must be in [1, {MAX_POINTS:,}] (0 for {default}), got {value}"
        )
    return value


def _requested_steps(values: list[int]) -> Steps | None:
    if not values:
        return None
    if len(values) > MAX_POINTS:
        raise InvalidInput("steps", f"at most {MAX_POINTS:,} steps, got {len(values):,}")
    steps = np.asarray(values, dtype=np.int64)
    low = np.flatnonzero(steps < 1)
    if low.size:
        raise InvalidInput(f"steps[{low[0]}]", f"must be >= 1, got {steps[low[0]]}")
    high = np.flatnonzero(steps > MAX_STEPS)
    if high.size:
        raise InvalidInput(f"steps[{high[0]}]", f"must be at most {MAX_STEPS:,}")
    back = np.flatnonzero(np.diff(steps) <= 0)
    if back.size:
        i = int(back[0]) + 1
        raise InvalidInput(f"steps[{i}]", f"must be above steps[{i - 1}] ({steps[i - 1]})")
    return steps


def _step_count(schedule: pb.Schedule) -> int:
    """The schedule's length, known without building it (0 when unset)."""
    kind = schedule.WhichOneof("kind")
    if kind == "lrs":
        return len(schedule.lrs.values)
    return int(schedule.named.total_steps) if kind == "named" else 0


def _same_lengths(schedules: list[pb.Schedule]) -> None:
    """With `steps` given, every schedule must have the same number of steps."""
    first = _step_count(schedules[0])
    for i, schedule in enumerate(schedules[1:], start=1):
        count = _step_count(schedule)
        if count != first:
            raise InvalidInput(
                f"schedules[{i}]",
                f"has {count:,} steps and schedules[0] {first:,}: with `steps` given, every "
                "schedule must have the same number",
            )


def _decay_shape(mode: str, shape: str) -> DecayShape:
    if mode != "wsd_decay":
        if shape:
            raise InvalidInput("decay_shape", "is for mode wsd_decay only")
        return "linear"
    chosen = shape or "linear"
    if chosen not in DECAY_SHAPES:
        known = ", ".join(DECAY_SHAPES)
        raise InvalidInput("decay_shape", f"must be one of {known}, got {shape!r}")
    return chosen  # type: ignore[return-value]  # checked against DECAY_SHAPES


def curve_message(name: str, curve: Curve) -> pb.CurvePrediction:
    return pb.CurvePrediction(
        name=name,
        steps=curve.steps.tolist(),
        loss=curve.loss.tolist(),
        final_loss=curve.final_loss,
        total_steps=curve.total_steps,
    )


def _chosen_schedule(
    request: pb.PlanScheduleRequest, shape: DecayShape, plan: SchedulePlan
) -> pb.Schedule:
    if plan.decay_fraction is None:
        return pb.Schedule(name="optimal", lrs=pb.LearningRates(values=plan.lrs.tolist()))
    named = pb.NamedSchedule(
        family="wsd",
        total_steps=request.total_steps,
        peak_lr=request.peak_lr,
        floor_lr=request.floor_lr,
        warmup_steps=request.warmup_steps,
        decay_fraction=plan.decay_fraction,
        decay_shape=shape,
    )
    return pb.Schedule(name=f"wsd-{plan.decay_fraction:.1%}", named=named)


class CurveRpcs(RpcBase):
    """PredictCurve, PlanSchedule."""

    @functools.cached_property
    def _curve_laws(self) -> FreshEntries[LawRecord]:
        return FreshEntries(self.laws)

    async def _curve_law(self, selector: pb.LawSelector, query: str) -> tuple[LawRecord, CurveLaw]:
        """The selected loss-curve law (its record cached like final-loss laws)."""
        key = (selector.family, selector.form, selector.version)
        record = await self._curve_laws.fetch(
            key, lambda: self._law_record(selector, "law.", "curve")
        )
        require_kind(record.form, "curve", query)
        law = parse_any_law(record.form, record.parameters, "law.parameters")
        assert isinstance(law, MultiPowerLaw | AnnealingLaw)
        return record, law

    def _pool_for(self, steps: int) -> SolverPool | FitPool:
        return self.fit_pool if steps > LONG_PREDICTION_STEPS else self.pool

    @translate_errors
    async def PredictCurve(
        self, request: pb.PredictCurveRequest, context: Context
    ) -> pb.PredictCurveResponse:
        schedules = list(request.schedules)
        if not 1 <= len(schedules) <= MAX_SCHEDULES:
            raise InvalidInput(
                "schedules", f"give 1 to {MAX_SCHEDULES} schedules, got {len(schedules)}"
            )
        steps = _requested_steps(list(request.steps))
        points = DEFAULT_CURVE_POINTS
        if steps is None:
            points = _points(request.points, DEFAULT_CURVE_POINTS)
        else:
            if request.points:
                raise InvalidInput("points", "give either steps or points, not both")
            _same_lengths(schedules)
        record, law = await self._curve_law(request.law, "PredictCurve")
        async with self._default_deadline(context):
            curves = await asyncio.gather(
                *(
                    self._pool_for(_step_count(s)).run(
                        predict_schedule,
                        law,
                        f"schedules[{i}]",
                        s.SerializeToString(),
                        steps,
                        points,
                    )
                    for i, s in enumerate(schedules)
                )
            )
        return pb.PredictCurveResponse(
            curves=[
                curve_message(schedule_name(s, i), curve)
                for i, (s, curve) in enumerate(zip(schedules, curves, strict=True))
            ],
            law=mapping.law_summary(record),
        )

    @translate_errors
    async def PlanSchedule(
        self, request: pb.PlanScheduleRequest, context: Context
    ) -> pb.PlanScheduleResponse:
        if request.mode not in MODES:
            raise InvalidInput("mode", f"must be one of {', '.join(MODES)}, got {request.mode!r}")
        problem = ScheduleProblem(
            request.total_steps, request.peak_lr, request.floor_lr, request.warmup_steps
        )
        shape = _decay_shape(request.mode, request.decay_shape)
        if shape == "exponential" and problem.floor_lr <= 0:
            raise InvalidInput("floor_lr", "must be > 0 for an exponential decay")
        points = _points(request.points, DEFAULT_PLAN_POINTS)
        record, law = await self._curve_law(request.law, "PlanSchedule")
        long_work = problem.total_steps > LONG_SEARCH_STEPS[request.mode]
        async with self._default_deadline(context):
            if long_work:
                plan = await self.fit_pool.run(
                    plan_schedule, law, problem, request.mode, shape, points
                )
            else:
                plan = await self.pool.run(plan_schedule, law, problem, request.mode, shape, points)
        chosen = _chosen_schedule(request, shape, plan)
        response = pb.PlanScheduleResponse(
            schedule=chosen,
            final_loss=plan.final_loss,
            cosine_final_loss=plan.cosine_final_loss,
            gain_over_cosine=plan.cosine_final_loss - plan.final_loss,
            curve=curve_message(chosen.name, plan.curve),
            cosine_curve=curve_message("cosine", plan.cosine_curve),
            law=mapping.law_summary(record),
            solver=plan.solver,
        )
        if plan.decay_fraction is not None:
            response.decay_fraction = plan.decay_fraction
        return response
