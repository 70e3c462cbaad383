"""The work of PredictCurve and PlanSchedule that runs in worker processes: decoding a schedule,
predicting its curve, searching for a schedule. Kept apart from the RPCs so that a worker
unpickling these functions imports only numpy, the planner and the messages, not the server.

A request's step s is the loss after s steps: the laws' index s - 1 (planner.curves counts steps
from 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.curves.optimize import (
    CurveLaw,
    ScheduleProblem,
    best_decay_fraction,
    final_loss,
    optimal_schedule,
)
from planner.curves.schedules import Array, DecayShape
from planner.errors import InvalidInput
from planner_api.v1 import planner_pb2 as pb
from server.schedule_decoding import schedule_lrs

Steps = NDArray[np.int64]


@dataclass(frozen=True)
class Curve:
    """A predicted curve: 1-based steps, the loss after each, the exact final loss."""

    steps: Steps
    loss: Array
    final_loss: float
    total_steps: int


@dataclass(frozen=True)
class SchedulePlan:
    lrs: Array
    final_loss: float
    cosine_final_loss: float
    decay_fraction: float | None
    solver: str
    curve: Curve
    cosine_curve: Curve


def evenly_spaced(lrs: Array, points: int) -> Steps:
    """`points` steps evenly spaced up to the last, skipping any before training starts (the
    rates summed so far 0, where the laws are undefined)."""
    total = lrs.size
    steps = np.unique(np.round(np.linspace(total / points, total, points)).astype(np.int64))
    steps = steps[steps >= 1]  # more points than steps: every step once
    trained = np.cumsum(lrs)[steps - 1] > 0
    return steps[trained]


def curve_of(law: CurveLaw, lrs: Array, steps: Steps) -> Curve:
    loss = law.predict(lrs, steps - 1) if steps.size else np.empty(0)
    return Curve(steps, np.asarray(loss), final_loss(law, lrs), int(lrs.size))


def predict_schedule(
    law: CurveLaw, field: str, schedule: bytes, steps: Steps | None, points: int
) -> Curve:
    """Decode one schedule of a PredictCurve request (serialised: messages do not pickle)
    and predict it."""
    lrs = schedule_lrs(field, pb.Schedule.FromString(schedule))
    if np.cumsum(lrs)[-1] <= 0:
        raise InvalidInput(field, "has no step with a rate > 0: the laws are undefined")
    if steps is None:
        return curve_of(law, lrs, evenly_spaced(lrs, points))
    if steps[-1] > lrs.size:
        raise InvalidInput("steps", f"must be at most {lrs.size:,}, the steps of {field}")
    untrained = np.flatnonzero(np.cumsum(lrs)[steps - 1] <= 0)
    if untrained.size:
        i = int(untrained[0])
        raise InvalidInput(
            f"steps[{i}]",
            f"step {steps[i]} comes before any training in {field} (its rates so far sum to 0), "
            "where the laws are undefined",
        )
    return curve_of(law, lrs, steps)


def plan_schedule(
    law: CurveLaw, problem: ScheduleProblem, mode: str, shape: DecayShape, points: int
) -> SchedulePlan:
    """A PlanSchedule answer: the schedule, cosine, both curves at the same steps."""
    cosine = problem.cosine()
    steps = evenly_spaced(cosine, points)
    fraction: float | None = None
    if mode == "wsd_decay":
        choice = best_decay_fraction(law, problem, shape)
        lrs, loss, cosine_loss, solver = (
            choice.lrs,
            choice.final_loss,
            choice.cosine_final_loss,
            choice.solver,
        )
        fraction = choice.decay_fraction
    else:
        found = optimal_schedule(law, problem)
        lrs, loss, cosine_loss, solver = (
            found.lrs,
            found.final_loss,
            found.cosine_final_loss,
            found.solver,
        )
    return SchedulePlan(
        lrs=lrs,
        final_loss=loss,
        cosine_final_loss=cosine_loss,
        decay_fraction=fraction,
        solver=solver,
        curve=curve_of(law, lrs, steps),
        cosine_curve=curve_of(law, cosine, steps),
    )
