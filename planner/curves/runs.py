"""Training curves from stored checkpoints: rows grouped by run into the Curves the loss-curve
laws are fitted to.

A checkpoint row gives the loss after an optimizer step and the learning rate at that step. The
laws need the rate at every step, so each run's per-step schedule is either given (checked
against the checkpoints' rates) or interpolated linearly between its checkpoints.

Step-0 convention of the interpolation: a run without a checkpoint at step 0 is taken to start
at learning rate 0 at step 0, i.e. a linear warm-up from 0 to its first checkpoint's rate (the
usual warm-up; the published loss curves' checkpoints all start after theirs). A run that did
not warm up from 0 should have a checkpoint at step 0 or a schedule given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.curves.fit import Curve
from planner.curves.multi_power import Index
from planner.curves.schedules import MAX_STEPS, Array
from planner.errors import Infeasible, InvalidInput

# A given schedule must reproduce every checkpoint's rate to this relative tolerance: the rates
# are the same numbers written twice, so anything beyond float printing is a different schedule.
SCHEDULE_RTOL = 1e-6


@dataclass(frozen=True)
class Checkpoint:
    """One stored row: its run, optimizer step and learning rate (None when not recorded)."""

    run_id: str
    step: int | None
    lr: float | None
    loss: float


@dataclass(frozen=True)
class RunCurves:
    """One curve per run (named by run_id, in first-row order), which runs had their schedule
    interpolated, and how many checkpoints were left out for coming before any training (the
    cumulative rate still 0: the laws predict nothing there)."""

    curves: tuple[Curve, ...]
    interpolated: tuple[str, ...]
    skipped: int

    @property
    def checkpoints(self) -> int:
        return sum(int(curve.steps.size) for curve in self.curves)


def run_curves(rows: Sequence[Checkpoint], schedules: Mapping[str, Array]) -> RunCurves:
    """Group `rows` by run_id into curves; `schedules` (by run_id, per-step rates already
    validated) replaces a run's interpolated schedule.

    Infeasible (the data cannot be fitted) when a row lacks its step or lr; InvalidInput naming
    `schedules[<run_id>]` when a schedule names no run, is too short for the run's checkpoints,
    or disagrees with a checkpoint's lr by more than SCHEDULE_RTOL."""
    _require_steps_and_rates(rows)
    by_run: dict[str, list[Checkpoint]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    for run_id in schedules:
        if run_id not in by_run:
            raise InvalidInput(f"schedules[{run_id}]", "names no run of the family")
    curves, interpolated, skipped = [], [], 0
    for run_id, checkpoints in by_run.items():
        ordered = sorted(checkpoints, key=lambda row: int(row.step or 0))
        steps = np.array([row.step for row in ordered], dtype=np.intp)
        rates = np.array([row.lr for row in ordered], dtype=np.float64)
        loss = np.array([row.loss for row in ordered], dtype=np.float64)
        if run_id in schedules:
            lrs = _checked(run_id, schedules[run_id], steps, rates)
        else:
            lrs = interpolated_schedule(run_id, steps, rates)
            interpolated.append(run_id)
        trained = np.cumsum(lrs)[steps] > 0
        skipped += int(np.sum(~trained))
        if not np.any(trained):
            raise Infeasible(
                f"run {run_id!r} has no checkpoint after any training (the learning rate is 0 "
                "up to its last checkpoint)",
                field="runs",
            )
        curves.append(Curve.of(lrs, steps[trained], loss[trained], run_id))
    return RunCurves(tuple(curves), tuple(interpolated), skipped)


def interpolated_schedule(run_id: str, steps: Index, rates: Array) -> Array:
    """Per-step rates from step 0 to the last checkpoint, linear between checkpoints, from rate
    0 at step 0 unless a checkpoint is there (the module's step-0 convention)."""
    last = int(steps[-1])
    if last >= MAX_STEPS:
        raise Infeasible(
            f"run {run_id!r} has a checkpoint at step {last:,}; the loss-curve laws take "
            f"schedules of at most {MAX_STEPS:,} steps",
            field="runs",
        )
    if steps[0] != 0:
        steps = np.concatenate([[0], steps])
        rates = np.concatenate([[0.0], rates])
    return np.asarray(np.interp(np.arange(last + 1), steps, rates), dtype=np.float64)


def _checked(run_id: str, lrs: Array, steps: Index, rates: Array) -> Array:
    field = f"schedules[{run_id}]"
    if int(steps[-1]) >= lrs.size:
        raise InvalidInput(
            field,
            f"has {lrs.size:,} steps, but run {run_id!r} has a checkpoint at step "
            f"{int(steps[-1]):,}",
        )
    given = lrs[steps]
    scale = np.maximum(np.abs(given), np.abs(rates))
    mismatch = np.abs(given - rates) > SCHEDULE_RTOL * scale
    if np.any(mismatch):
        i = int(np.flatnonzero(mismatch)[0])
        raise InvalidInput(
            field,
            f"gives lr {given[i]:.9g} at step {int(steps[i])}, where the checkpoint of run "
            f"{run_id!r} has lr {rates[i]:.9g} (relative mismatch above {SCHEDULE_RTOL:g})",
        )
    return lrs


def _require_steps_and_rates(rows: Sequence[Checkpoint]) -> None:
    for name, missing in (
        ("step", [row.run_id for row in rows if row.step is None]),
        ("lr", [row.run_id for row in rows if row.lr is None]),
    ):
        if missing:
            runs = list(dict.fromkeys(missing))
            raise Infeasible(
                f"{len(missing)} rows of {len(runs)} runs lack {name} (e.g. run "
                f"{runs[0]!r}); the loss-curve laws are fitted to checkpoints that carry their "
                "step and learning rate",
                field="runs",
            )
