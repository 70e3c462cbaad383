"""Fit job of a task law (form "task_link:<task>"), run in the fit pool: both steps on a
family's runs (planner.tasks.fit_task_scaling_law), and a bootstrap over training runs.

The bootstrap resamples whole runs with replacement (a run's checkpoints are correlated, so the
run is the unit of independence, as in the final-loss fits) and refits both steps on each
resample; a row holds the nine parameters of that chained law (TASK_LAW_NAMES order), so the
band of a prediction pairs each step-1 law with the link fitted on the same runs. A resample
whose fit fails (too few distinct (N, D) for step 1, a link that does not converge) gives a row
of NaN, counted as failed and dropped by Ensemble.of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.errors import InvalidInput, PlannerError
from planner.tasks import RunCheckpoints, TaskScalingLaw, fit_task_scaling_law
from planner.tasks.stored import TASK_LAW_NAMES, parameter_row

TASK_FIT_METHOD = "ladder_two_step"
# Fewer runs cannot fit step 1's five parameters.
MIN_RUNS = 5


def run_resamples(runs: int, resamples: int, seed: int) -> list[NDArray[np.int64]]:
    """`resamples` draws of `runs` run indices with replacement, fixed by `seed` (drawn up front,
    so the ensemble does not depend on how the draws are split over workers)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, runs, size=runs) for _ in range(resamples)]


@dataclass(frozen=True)
class TaskFitJob:
    """A ladder's runs and the fit's settings (planner.tasks.fit_task_scaling_law's)."""

    runs: tuple[RunCheckpoints, ...]
    chance: float
    skip_fraction: float
    window: int

    def validated(self) -> TaskFitJob:
        if len(self.runs) < MIN_RUNS:
            raise InvalidInput("runs", f"needs at least {MIN_RUNS} runs, got {len(self.runs)}")
        return self

    def fit(self) -> TaskScalingLaw:
        return self._fit(self.runs)

    def bootstrap(self, samples: Sequence[NDArray[np.int64]]) -> NDArray[np.float64]:
        """One row per resample (NaN where its fit failed)."""
        rows = np.full((len(samples), len(TASK_LAW_NAMES)), np.nan)
        for i, sample in enumerate(samples):
            try:
                rows[i] = parameter_row(self._fit(tuple(self.runs[j] for j in sample)))
            except PlannerError:
                continue  # left NaN: a failed resample
        return rows

    def _fit(self, runs: tuple[RunCheckpoints, ...]) -> TaskScalingLaw:
        return fit_task_scaling_law(
            runs, self.chance, window=self.window, skip_fraction=self.skip_fraction
        )
