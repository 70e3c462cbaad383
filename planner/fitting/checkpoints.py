"""Which checkpoints of each training run a fit uses, and resampling by run.

A checkpoint before the end of a run is not the loss of a run trained to its token count (the
learning rate has not decayed there), so the default fits each run's last checkpoint only; the
Hitchhiker's guide and the OLMo ladder also fit the tail of each run (`after_fraction`). The
bootstrap resamples whole runs: checkpoints of one run share its noise and are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.errors import InvalidInput
from planner.fitting.data import Index, Runs

MODES = ("final", "all", "after_fraction")


@dataclass(frozen=True)
class CheckpointSelection:
    """`final`: each run's last checkpoint; `all`: every row; `after_fraction`: each run's rows
    with tokens >= fraction x its largest token count."""

    mode: str = "final"
    fraction: float = 0.0

    def validated(self) -> CheckpointSelection:
        if self.mode not in MODES:
            raise InvalidInput(
                "options.checkpoints", f"unknown mode {self.mode!r}; known: {list(MODES)}"
            )
        if self.mode == "after_fraction":
            if not (np.isfinite(self.fraction) and 0 < self.fraction <= 1):
                raise InvalidInput(
                    "options.after_fraction", f"must be in (0, 1], got {self.fraction}"
                )
        elif self.fraction:
            raise InvalidInput(
                "options.after_fraction", "applies only to checkpoints 'after_fraction'"
            )
        return self

    def describe(self) -> dict[str, str]:
        if self.mode == "after_fraction":
            return {"checkpoints": f"after_fraction {self.fraction:g}"}
        return {"checkpoints": self.mode}

    def rows(self, runs: Runs) -> Index:
        """Indices of the selected rows, in their original order."""
        if self.mode == "all" or runs.groups is None:
            return np.arange(len(runs), dtype=np.intp)
        largest = run_maximum(runs.groups, runs.tokens)
        if self.mode == "final":
            # The last checkpoint of a run is the one with the most tokens (ties: the first).
            keep = runs.tokens >= largest
            first = np.zeros(len(runs), dtype=bool)
            _, chosen = np.unique(runs.groups[keep], return_index=True)
            first[np.flatnonzero(keep)[chosen]] = True
            return np.flatnonzero(first)
        return np.flatnonzero(runs.tokens >= self.fraction * largest * (1 - 1e-12))

    def select(self, runs: Runs) -> Runs:
        return runs.subset(self.rows(runs))


def run_maximum(groups: Index, values: np.ndarray) -> np.ndarray:
    """For each row, the largest value among the rows of its run."""
    largest = np.full(int(groups.max()) + 1 if groups.size else 0, -np.inf)
    np.maximum.at(largest, groups, values)
    return np.asarray(largest[groups])


def final_rows(runs: Runs) -> Index:
    """Each run's last checkpoint."""
    return CheckpointSelection("final").rows(runs)


def at_final_row(runs: Runs, values: np.ndarray) -> np.ndarray:
    """For each row, `values` at its run's last checkpoint (e.g. the run's training compute,
    which decides the side of a compute cut every checkpoint of the run falls on)."""
    finals = final_rows(runs)
    per_run = np.zeros(int(runs.group_codes.max()) + 1)
    per_run[runs.group_codes[finals]] = values[finals]
    return np.asarray(per_run[runs.group_codes])


def cluster_resamples(runs: Runs, resamples: int, seed: int) -> list[Index]:
    """`resamples` bootstrap samples of row indices: runs drawn with replacement, each drawn run
    bringing all its rows (reproducible by seed). Without groups, plain row resampling."""
    rng = np.random.default_rng(seed)
    codes = runs.group_codes
    labels, inverse = np.unique(codes, return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    draws = rng.integers(0, labels.size, size=(resamples, labels.size))
    if runs.groups is None:
        return list(draws.astype(np.intp))
    return [np.concatenate([members[g] for g in row]).astype(np.intp) for row in draws]
