"""What a fit returns: the law, the objective it reached and how well it fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.fitting.data import Array, Runs
from planner.laws import ChinchillaLaw

# The Chinchilla form's parameter count, for callers that do not say how many they fitted.
CHINCHILLA_PARAMETERS = 5


@dataclass(frozen=True)
class Diagnostics:
    """Residuals on log loss: RMSE, the largest absolute one, bound hits, and the residual
    standard deviation (weighted, per degree of freedom) that prediction intervals use."""

    rmse_log_loss: float
    max_abs_log_loss: float
    runs: int
    on_bound: tuple[str, ...]
    residual_sd_log_loss: float = float("nan")


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted Chinchilla law, the method's own objective value and diagnostics."""

    law: ChinchillaLaw
    method: str
    objective: float
    diagnostics: Diagnostics


def fit_weights(runs: Runs) -> Array:
    """Row weights scaled to mean 1: the objective then does not depend on how the caller
    scaled them, and equal weights give the plain (unweighted) sum."""
    weights = runs.row_weights
    return np.asarray(weights * (weights.size / weights.sum()), dtype=np.float64)


def diagnose(
    law: ChinchillaLaw,
    runs: Runs,
    on_bound: tuple[str, ...] = (),
    free_parameters: int = CHINCHILLA_PARAMETERS,
) -> Diagnostics:
    return diagnose_predictions(
        law.predict(runs.params, runs.tokens), runs, on_bound, free_parameters
    )


def diagnose_predictions(
    predicted: NDArray[np.float64],
    runs: Runs,
    on_bound: tuple[str, ...] = (),
    free_parameters: int = CHINCHILLA_PARAMETERS,
) -> Diagnostics:
    residuals = np.log(predicted) - np.log(runs.loss)
    dof = len(runs) - free_parameters
    weighted_ssr = float(np.dot(fit_weights(runs), residuals**2))
    return Diagnostics(
        rmse_log_loss=float(np.sqrt(np.mean(residuals**2))),
        max_abs_log_loss=float(np.max(np.abs(residuals))),
        runs=len(runs),
        on_bound=on_bound,
        residual_sd_log_loss=float(np.sqrt(weighted_ssr / dof)) if dof > 0 else float("nan"),
    )


def squared_error(law: ChinchillaLaw, runs: Runs) -> float:
    """Sum of squared errors on raw loss: the objective VPNLS minimises (equal weights)."""
    return float(np.sum((law.predict(runs.params, runs.tokens) - runs.loss) ** 2))
