"""Backtests: fit on the runs below a compute cut, predict the runs above it.

A law is worth betting a cluster on only if it extrapolates; this measures how well each fit
method's law, fitted on small runs, predicts the large ones. A run is on the side of the cut its
final checkpoint's compute puts it, so no checkpoint of a held-out run is fitted, and held-out
runs are scored by their final loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.errors import Infeasible, PlannerError
from planner.fitting.checkpoints import CheckpointSelection, at_final_row, final_rows
from planner.fitting.data import Array, Index, Runs
from planner.fitting.jobs import FitJob
from planner.fitting.options import FitOptions
from planner.laws import ChinchillaLaw
from planner.validation import positive


@dataclass(frozen=True)
class MethodBacktest:
    """One method's fit on the training runs and its relative errors on the held-out runs."""

    method: str
    law: ChinchillaLaw | None
    failure: str
    predicted: Array
    relative_error: Array
    # For method auto: the candidate it chose on the training runs.
    chosen: str = ""

    @property
    def mean_abs_relative_error(self) -> float:
        return float(np.mean(np.abs(self.relative_error))) if self.law else float("nan")

    @property
    def max_abs_relative_error(self) -> float:
        return float(np.max(np.abs(self.relative_error))) if self.law else float("nan")


@dataclass(frozen=True)
class Backtest:
    train: Index  # indices of the training rows (every checkpoint of the runs below the cut)
    test: Index  # indices of the held-out runs' final checkpoints
    methods: tuple[MethodBacktest, ...]
    train_runs: int = field(default=0)


def backtest(
    runs: Runs,
    compute: Array,
    train_below: float,
    methods: tuple[str, ...],
    options: FitOptions | None = None,
    checkpoints: CheckpointSelection | None = None,
) -> Backtest:
    """Fit each method on the runs whose final compute is < train_below, score it on the final
    checkpoints of the others. A method whose fit fails reports why instead of failing all."""
    cut = positive("train_below", train_below)
    finals = final_rows(runs)
    train = np.flatnonzero(at_final_row(runs, compute) < cut)
    test = finals[compute[finals] >= cut]
    if test.size == 0:
        raise Infeasible(
            f"no run has compute >= train_below = {cut:g} (the largest is {compute.max():.4g}); "
            "nothing would be held out",
            field="train_below",
        )
    if train.size == 0:
        raise Infeasible(
            f"no run has compute < train_below = {cut:g} (the smallest is {compute.min():.4g}); "
            "nothing to fit on",
            field="train_below",
        )
    held_out = runs.subset(test)
    training = runs.subset(train)
    results = []
    for method in methods:
        job = FitJob(
            training,
            method=method,
            options=options or FitOptions(),
            checkpoints=checkpoints or CheckpointSelection(),
            compute=compute[train],
        )
        try:
            fitted = job.validated().fit()
        except PlannerError as error:
            empty = np.full(test.size, np.nan)
            results.append(MethodBacktest(method, None, error.message, empty, empty))
            continue
        law = fitted.law
        assert isinstance(law, ChinchillaLaw)
        predicted = law.predict(held_out.params, held_out.tokens)
        error_ratio = predicted / held_out.loss - 1.0
        chosen = fitted.choice.chosen.label if fitted.choice else ""
        results.append(MethodBacktest(method, law, "", predicted, error_ratio, chosen))
    train_runs = int(np.unique(runs.group_codes[train]).size)
    return Backtest(train=train, test=test, methods=tuple(results), train_runs=train_runs)
