"""Checkpoint-to-checkpoint spread of a task's metrics, the ladder paper's predictability signal.

The authors' variance analysis (OLMo-ladder src/scripts/variance_analysis.py, --last_n_points
10, on the 1B-10xC run): over a run's last 10 checkpoints, unsmoothed, the standard deviation
(population, ddof 0) of task loss and of accuracy, and each divided by its mean (the coefficient
of variation). Their table marks a value above the mean of its column over the tasks compared;
the tasks so marked in the loss or the accuracy column are the ones their chained predictions
miss by more (the paper: higher prediction error goes with higher variance). `noisy_tasks`
applies that rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from planner.errors import InvalidInput
from planner.tasks._checks import whole
from planner.tasks.runs import RunCheckpoints

LAST_CHECKPOINTS = 10


@dataclass(frozen=True)
class CheckpointSpread:
    """Spread of a task's metrics over a run's last checkpoints (SD and SD / mean)."""

    checkpoints: int
    loss_sd: float
    loss_cv: float
    accuracy_sd: float
    accuracy_cv: float


def checkpoint_spread(run: RunCheckpoints, last: int = LAST_CHECKPOINTS) -> CheckpointSpread:
    """Spread over the run's last `last` checkpoints (all of them if it has fewer)."""
    last = whole("last", last, 2)
    if run.task_loss.size < 2:
        raise InvalidInput("run", "needs at least 2 checkpoints for a spread")
    losses = run.task_loss[-last:]
    accuracies = run.accuracy[-last:]
    accuracy_mean = float(np.mean(accuracies))
    if not accuracy_mean > 0:
        raise InvalidInput(
            "accuracy", "is zero at every checkpoint; its relative spread is undefined"
        )
    return CheckpointSpread(
        checkpoints=int(losses.size),
        loss_sd=float(np.std(losses)),
        loss_cv=float(np.std(losses) / np.mean(losses)),
        accuracy_sd=float(np.std(accuracies)),
        accuracy_cv=float(np.std(accuracies) / accuracy_mean),
    )


def noisy_tasks(spreads: Mapping[str, CheckpointSpread]) -> frozenset[str]:
    """Tasks whose loss CV or accuracy CV is above that column's mean over `spreads`.

    Relative by construction: it ranks tasks measured on the same run against each other, so
    compare tasks of one ladder run, and at least two of them.
    """
    if len(spreads) < 2:
        raise InvalidInput("spreads", "needs at least 2 tasks to compare")
    loss_mean = float(np.mean([s.loss_cv for s in spreads.values()]))
    accuracy_mean = float(np.mean([s.accuracy_cv for s in spreads.values()]))
    return frozenset(
        name
        for name, s in spreads.items()
        if s.loss_cv > loss_mean or s.accuracy_cv > accuracy_mean
    )
