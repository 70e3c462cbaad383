"""The chained task law: (N, D) -> task loss (step 1) -> accuracy (step 2), fitted on a ladder.

Defaults are the paper's main setting (OLMo-ladder src/scripts/predict.py with --moving_avg 5
--skip_perc 0.1): step 1 on each run's last 5 checkpoints, step 2 on every checkpoint after the
first 10% of each run, smoothed over 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.errors import InvalidInput
from planner.laws import ChinchillaLaw
from planner.tasks._checks import whole
from planner.tasks.link import SigmoidLink, fit_sigmoid_link
from planner.tasks.loss_law import fit_task_loss_law
from planner.tasks.runs import RunCheckpoints, check_skip_fraction, final_point, link_points
from planner.tasks.spread import CheckpointSpread, checkpoint_spread
from planner.validation import positive

WINDOW = 5
SKIP_FRACTION = 0.1


@dataclass(frozen=True)
class TaskPrediction:
    task_loss: float  # bits per byte of the correct answer
    accuracy: float


@dataclass(frozen=True)
class TaskScalingLaw:
    """loss_law: task loss (bits per byte) of (N, D); link: accuracy of task loss; spread: the
    metrics' spread over the last checkpoints of the ladder's largest-compute run (None when
    that run has under 2 checkpoints)."""

    loss_law: ChinchillaLaw
    link: SigmoidLink
    spread: CheckpointSpread | None = None

    def predict(self, params: float, tokens: float) -> TaskPrediction:
        """Task loss and accuracy of a model of `params` parameters trained on `tokens`."""
        loss = self.loss_law.loss(positive("params", params), positive("tokens", tokens))
        return TaskPrediction(task_loss=loss, accuracy=float(self.link.accuracy(loss)))

    def task_loss_for(self, accuracy: float) -> float:
        """Largest task loss reaching `accuracy` (Infeasible outside the link's range)."""
        return self.link.task_loss_for(accuracy)


def fit_task_scaling_law(
    runs: Sequence[RunCheckpoints],
    chance: float,
    ceiling: float = 1.0,
    window: int = WINDOW,
    skip_fraction: float = SKIP_FRACTION,
) -> TaskScalingLaw:
    """Fit both steps on the same ladder runs (the paper's 16: 190M-1.3B at 1, 2, 5, 10 xC)."""
    if not runs:
        raise InvalidInput("runs", "needs at least one run")
    for index, run in enumerate(runs):
        if not isinstance(run, RunCheckpoints):
            raise InvalidInput(f"runs[{index}]", "must be a RunCheckpoints")
    # Options first: a bad one should not cost a fit.
    window = whole("window", window, 1)
    skip_fraction = check_skip_fraction(skip_fraction)
    ends = [final_point(run, window) for run in runs]
    loss_law = fit_task_loss_law(
        [run.params for run in runs], [d for d, _ in ends], [loss for _, loss in ends]
    )
    pairs = [link_points(run, skip_fraction, window) for run in runs]
    link = fit_sigmoid_link(
        np.concatenate([loss for loss, _ in pairs]),
        np.concatenate([acc for _, acc in pairs]),
        chance=chance,
        ceiling=ceiling,
    )
    # The paper measures spread on its largest run (1B-10xC); take the one of most N * D.
    largest = max(runs, key=lambda run: run.params * run.final_tokens)
    spread = checkpoint_spread(largest) if largest.task_loss.size >= 2 else None
    return TaskScalingLaw(loss_law=loss_law, link=link, spread=spread)
