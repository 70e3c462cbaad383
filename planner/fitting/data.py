"""Observed runs as arrays, checked before any fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import Infeasible, InvalidInput

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Runs:
    """Parameters N, tokens D and losses L of the runs to fit (one entry per run)."""

    params: Array
    tokens: Array
    loss: Array
    # Unique tokens U per run; None when the runs do not say (unlimited data).
    unique: Array | None = None

    @classmethod
    def of(
        cls,
        params: ArrayLike,
        tokens: ArrayLike,
        loss: ArrayLike,
        unique_tokens: ArrayLike | None = None,
    ) -> Runs:
        columns = {"params": params, "tokens": tokens, "loss": loss}
        if unique_tokens is not None:
            columns["unique_tokens"] = unique_tokens
        arrays = [np.asarray(v, dtype=np.float64).ravel() for v in columns.values()]
        for name, values in zip(columns, arrays, strict=True):
            if not np.all(np.isfinite(values)):
                raise InvalidInput(f"runs.{name}", "must all be finite numbers")
            if np.any(values <= 0):
                raise InvalidInput(f"runs.{name}", "must all be > 0")
        if len({a.size for a in arrays}) != 1:
            raise InvalidInput("runs", f"{', '.join(columns)} must have the same length")
        return cls(*arrays)

    def __len__(self) -> int:
        return int(self.params.size)

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

    def subset(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Runs:
        unique = None if self.unique is None else self.unique[index]
        return Runs(self.params[index], self.tokens[index], self.loss[index], unique)

    def single_epoch(self) -> Runs:
        """The runs that saw each token at most once (all of them when U is unknown)."""
        if self.unique is None:
            return self
        return self.subset(self.tokens <= self.unique * (1 + 1e-9))
