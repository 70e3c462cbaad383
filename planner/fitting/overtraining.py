"""Fit Gadre et al.'s over-training law (LAWS.md §3.2) to runs.

L = E + (a M^eta + b M^-eta) C^-eta with C = 6ND, M = D/N is exactly the Chinchilla form with
alpha = beta = 2 eta, A = a 6^-eta, B = b 6^-eta. So the fit is a Chinchilla fit with tied
exponents (FitOptions.tie_exponents), by any Chinchilla method, converted exactly afterwards:
eta = alpha / 2, a = A 6^eta, b = B 6^eta. Fixed parameters in `options` are named as in the
Chinchilla form (E, A, B, alpha, beta).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from planner.errors import PlannerError, SolverFailed
from planner.fitting.chinchilla import fit_chinchilla
from planner.fitting.data import Array, Runs
from planner.fitting.options import DEFAULT_OPTIONS, FitOptions
from planner.fitting.result import ChinchillaFit, Diagnostics
from planner.laws import ChinchillaLaw, OvertrainingLaw

# Ensemble columns of the overtraining form.
OVERTRAINING_PARAMETERS = ("E", "a", "b", "eta")
# Tied exponents come out of the fit equal to the last bit; anything more is not a tied fit.
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class OvertrainingFit:
    """The fitted law and the tied-exponent Chinchilla fit it is an exact rewrite of."""

    law: OvertrainingLaw
    chinchilla: ChinchillaFit

    @property
    def method(self) -> str:
        return self.chinchilla.method

    @property
    def objective(self) -> float:
        return self.chinchilla.objective

    @property
    def diagnostics(self) -> Diagnostics:
        # The same function of (N, D), so the same residuals.
        return self.chinchilla.diagnostics


def tied(options: FitOptions) -> FitOptions:
    """`options` with alpha = beta imposed: the over-training form has one exponent."""
    return replace(options, tie_exponents=True).validated()


def from_chinchilla(law: ChinchillaLaw) -> OvertrainingLaw:
    """The over-training parameters of a Chinchilla law with alpha = beta (the exact inverse of
    OvertrainingLaw.as_chinchilla)."""
    if not math.isclose(law.alpha, law.beta, rel_tol=TIE_TOLERANCE):
        raise SolverFailed(
            f"the over-training form needs alpha = beta; the fit gave alpha = {law.alpha:.6g}, "
            f"beta = {law.beta:.6g}"
        )
    eta = law.alpha / 2
    scale = 6.0**eta
    return OvertrainingLaw(E=law.E, a=law.A * scale, b=law.B * scale, eta=eta)


def fit_overtraining(
    runs: Runs,
    method: str = "vpnls",
    options: FitOptions = DEFAULT_OPTIONS,
    start: OvertrainingLaw | None = None,
) -> OvertrainingFit:
    """Fit E, a, b, eta by `method` (any Chinchilla method) with tied exponents. `start` (the
    full-data fit, for bootstrap resamples) refines from it instead of searching afresh."""
    fit = fit_chinchilla(
        runs,
        method,
        None if start is None else start.as_chinchilla(),
        options=tied(options),
    )
    return OvertrainingFit(from_chinchilla(fit.law), fit)


def bootstrap_overtraining(
    runs: Runs,
    method: str,
    indices: Sequence[NDArray[np.intp]],
    start: OvertrainingLaw | None = None,
    options: FitOptions = DEFAULT_OPTIONS,
) -> Array:
    """One (E, a, b, eta) row per resample: `indices` holds one 1-D array of row indices each
    (as chinchilla.bootstrap_fits); NaN rows where the resample could not be fitted (e.g. it
    drew a single model size)."""
    rows = np.full((len(indices), len(OVERTRAINING_PARAMETERS)), np.nan)
    for row, index in enumerate(indices):
        try:
            law = fit_overtraining(runs.subset(np.asarray(index)), method, options, start).law
        except PlannerError:
            continue
        rows[row] = [getattr(law, name) for name in OVERTRAINING_PARAMETERS]
    return rows
