"""One ladder run's checkpoints, and the two ways the ladder paper turns them into fit points.

Step 1 uses each run's end: the mean task loss of its last `window` checkpoints, at the tokens of
the very last one. Step 2 uses its trajectory: the first `skip_fraction` of checkpoints dropped
(ceil of the fraction, as the authors' get_step2_data_by_name does), then loss and accuracy
each smoothed by a trailing moving average whose first window - 1 values average what exists so
far (their `moving_average`, so no checkpoint is lost to the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from planner.errors import InvalidInput
from planner.tasks._checks import (
    Array,
    accuracy_vector,
    positive_vector,
    same_length,
    whole,
)
from planner.validation import finite, positive


@dataclass(frozen=True)
class RunCheckpoints:
    """Evaluations of one training run at its checkpoints, in training order.

    params: the run's parameter count N (the ladder uses final.json's `n`).
    tokens: tokens seen at each checkpoint. task_loss: bits per byte of the correct answer.
    accuracy: the task's accuracy (fraction in [0, 1]) at the same checkpoints.
    """

    params: float
    tokens: Array
    task_loss: Array
    accuracy: Array

    def __post_init__(self) -> None:
        # Every instance is checked (not only those built by `of`): positive N, tokens and
        # losses; accuracies in [0, 1]; one value of each per checkpoint.
        object.__setattr__(self, "params", positive("params", self.params))
        object.__setattr__(self, "tokens", positive_vector("tokens", self.tokens))
        object.__setattr__(self, "task_loss", positive_vector("task_loss", self.task_loss))
        object.__setattr__(self, "accuracy", accuracy_vector("accuracy", self.accuracy))
        same_length({"tokens": self.tokens, "task_loss": self.task_loss, "accuracy": self.accuracy})

    @classmethod
    def of(
        cls, params: float, tokens: ArrayLike, task_loss: ArrayLike, accuracy: ArrayLike
    ) -> RunCheckpoints:
        """Constructor taking any array-likes (lists, say)."""
        return cls(
            params=params,
            tokens=positive_vector("tokens", tokens),
            task_loss=positive_vector("task_loss", task_loss),
            accuracy=accuracy_vector("accuracy", accuracy),
        )

    @property
    def final_tokens(self) -> float:
        return float(self.tokens[-1])


def moving_average(values: ArrayLike, window: int) -> Array:
    """Trailing mean over `window` values; the first window - 1 average the values so far."""
    window = whole("window", window, 1)
    array = np.asarray(values, dtype=np.float64)
    count = np.minimum(np.arange(1, array.size + 1), window)
    total = np.cumsum(array)
    # Sum of the trailing window = running sum minus the running sum `window` places back.
    total[window:] -= total[:-window].copy()
    return np.asarray(total / count)


def final_point(run: RunCheckpoints, window: int) -> tuple[float, float]:
    """(tokens, task loss) of a run's end: last checkpoint's tokens, mean of the last `window`
    losses (fewer if the run has fewer checkpoints)."""
    window = whole("window", window, 1)
    return run.final_tokens, float(np.mean(run.task_loss[-window:]))


def check_skip_fraction(skip_fraction: float) -> float:
    skip_fraction = finite("skip_fraction", skip_fraction)
    if not 0 <= skip_fraction < 1:
        raise InvalidInput("skip_fraction", "must lie in [0, 1)")
    return skip_fraction


def link_points(run: RunCheckpoints, skip_fraction: float, window: int) -> tuple[Array, Array]:
    """(task loss, accuracy) pairs of a run for the step-2 fit: early checkpoints dropped, then
    both series smoothed."""
    start = math.ceil(check_skip_fraction(skip_fraction) * run.task_loss.size)
    return (
        moving_average(run.task_loss[start:], window),
        moving_average(run.accuracy[start:], window),
    )
