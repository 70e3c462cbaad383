"""Observed runs as arrays, checked before any fit.

A row is one evaluated checkpoint. Rows of one training run share a `group` (the run), so that
checkpoints can be selected per run and the bootstrap can resample whole runs; a row without a
group is a finished run of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import Infeasible, InvalidInput

Array = NDArray[np.float64]
Index = NDArray[np.intp]


@dataclass(frozen=True)
class Runs:
    """Parameters N, tokens D (seen at the checkpoint) and losses L, one entry per row."""

    params: Array
    tokens: Array
    loss: Array
    # Unique tokens U per row; None when the runs do not say (unlimited data).
    unique: Array | None = None
    # Training run of each row (rows of one run share a code); None: every row is its own run.
    groups: Index | None = None
    # Relative weight of each row in the fit (> 0); None: all equal.
    weights: Array | None = None

    @classmethod
    def of(
        cls,
        params: ArrayLike,
        tokens: ArrayLike,
        loss: ArrayLike,
        unique_tokens: ArrayLike | None = None,
        groups: ArrayLike | None = None,
        weights: ArrayLike | None = None,
    ) -> Runs:
        columns = {"params": params, "tokens": tokens, "loss": loss}
        if unique_tokens is not None:
            columns["unique_tokens"] = unique_tokens
        if weights is not None:
            columns["weights"] = weights
        arrays = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in columns.items()}
        for name, values in arrays.items():
            if not np.all(np.isfinite(values)):
                raise InvalidInput(f"runs.{name}", "must all be finite numbers")
            if np.any(values <= 0):
                raise InvalidInput(f"runs.{name}", "must all be > 0")
        codes = None if groups is None else np.asarray(groups).ravel()
        sizes = {a.size for a in arrays.values()} | ({codes.size} if codes is not None else set())
        if len(sizes) != 1:
            raise InvalidInput("runs", f"{', '.join(columns)} must have the same length")
        if codes is not None:
            # Any hashable labels (run ids) -> dense integer codes.
            codes = np.unique(codes, return_inverse=True)[1].astype(np.intp).ravel()
        return cls(
            arrays["params"],
            arrays["tokens"],
            arrays["loss"],
            arrays.get("unique_tokens"),
            codes,
            arrays.get("weights"),
        )

    def __len__(self) -> int:
        return int(self.params.size)

    @property
    def group_codes(self) -> Index:
        """The run of each row (every row its own run when no groups were given)."""
        if self.groups is None:
            return np.arange(len(self), dtype=np.intp)
        return self.groups

    @property
    def run_count(self) -> int:
        """Training runs, however many checkpoints each has."""
        return len(self) if self.groups is None else int(np.unique(self.groups).size)

    @property
    def row_weights(self) -> Array:
        return np.ones(len(self)) if self.weights is None else self.weights

    def require_fittable(self, free_parameters: int) -> None:
        """Enough runs, and spread in both N and D, to identify the parameters."""
        if len(self) <= free_parameters:
            raise Infeasible(
                f"{len(self)} runs cannot determine {free_parameters} free parameters; "
                f"give at least {free_parameters + 1}",
                field="runs",
            )
        for name, values in (("params", self.params), ("tokens", self.tokens)):
            if np.ptp(np.log(values)) < 1e-9:
                raise Infeasible(
                    f"all runs have the same {name} ({values[0]:g}); the law needs runs at "
                    f"several values of {name}",
                    field=f"runs.{name}",
                )

    def subset(self, index: Index | NDArray[np.bool_]) -> Runs:
        def pick(values: NDArray[np.generic] | None) -> NDArray[np.generic] | None:
            return None if values is None else values[index]

        return replace(
            self,
            params=self.params[index],
            tokens=self.tokens[index],
            loss=self.loss[index],
            unique=pick(self.unique),  # type: ignore[arg-type]
            groups=pick(self.groups),  # type: ignore[arg-type]
            weights=pick(self.weights),  # type: ignore[arg-type]
        )

    def single_epoch(self) -> Runs:
        """The runs that saw each token at most once (all of them when U is unknown)."""
        if self.unique is None:
            return self
        return self.subset(self.tokens <= self.unique * (1 + 1e-9))
