"""One fit request, whatever the law form: fit all runs once, refit bootstrap resamples.

A FitJob is a small picklable value, so the service can send its `fit` and `bootstrap` to worker
processes without knowing which form it fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from planner.errors import InvalidInput, Unsupported
from planner.fitting import chinchilla, data_constrained
from planner.fitting.data import Array, Runs
from planner.fitting.result import Diagnostics
from planner.laws import ChinchillaLaw, Law
from planner.laws.data_constrained import DataConstrainedLaw

FITTABLE_FORMS = ("chinchilla", "data_constrained")


@dataclass(frozen=True)
class FittedLaw:
    """A fitted law of any form, with its objective, diagnostics and the options used."""

    law: Law
    method: str
    objective: float
    diagnostics: Diagnostics
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FitJob:
    """What to fit: the runs, the form and method, and (data_constrained) where the Chinchilla
    part comes from: `base` as in data_constrained.BASES, `chinchilla` for base "law"."""

    runs: Runs
    form: str = "chinchilla"
    method: str = "vpnls"
    base: str = ""
    chinchilla: ChinchillaLaw | None = None

    def validated(self) -> FitJob:
        if self.form not in FITTABLE_FORMS:
            raise Unsupported(
                f"fitting the {self.form!r} form is not supported; fittable forms: "
                f"{list(FITTABLE_FORMS)}",
                field="form",
            )
        if self.method not in chinchilla.METHODS:
            raise InvalidInput(
                "method", f"unknown fit method {self.method!r}; known: {list(chinchilla.METHODS)}"
            )
        if self.form == "chinchilla":
            if self.base:
                raise InvalidInput("base", "applies only to the data_constrained form")
            self.runs.require_fittable(chinchilla.FREE_PARAMETERS)
            return self
        base = self.base or ("law" if self.chinchilla is not None else "single_epoch")
        if base not in data_constrained.BASES:
            raise InvalidInput(
                "base", f"unknown base {base!r}; known: {list(data_constrained.BASES)}"
            )
        return FitJob(self.runs, self.form, self.method, base, self.chinchilla)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        if self.form == "chinchilla":
            return chinchilla.PARAMETER_NAMES
        return data_constrained.PARAMETER_NAMES

    def fit(self) -> FittedLaw:
        """The fit on all runs."""
        if self.form == "chinchilla":
            result = chinchilla.fit_chinchilla(self.runs, self.method)
            return FittedLaw(result.law, self.method, result.objective, result.diagnostics)
        fitted = data_constrained.fit_data_constrained(
            self.runs, self.base, self.method, self.chinchilla
        )
        return FittedLaw(
            fitted.law,
            self.method,
            fitted.objective,
            fitted.diagnostics,
            {"base": self.base},
        )

    def bootstrap(self, indices: NDArray[np.intp], start: Law) -> Array:
        """Parameter vectors (in `parameter_names` order) of refits on each row's resample,
        refined from `start`, the fit on all runs; NaN rows where a resample failed."""
        if self.form == "chinchilla":
            assert isinstance(start, ChinchillaLaw)
            return chinchilla.bootstrap_fits(self.runs, self.method, indices, start)
        assert isinstance(start, DataConstrainedLaw)
        return data_constrained.bootstrap_fits(
            self.runs, indices, self.base, self.method, self.chinchilla, start
        )
