"""What a fit returns: the law, the objective it reached and how well it fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.fitting.data import Runs
from planner.laws import ChinchillaLaw


@dataclass(frozen=True)
class Diagnostics:
    """Residuals on log loss: RMSE, the largest absolute one, and bound hits."""

    rmse_log_loss: float
    max_abs_log_loss: float
    runs: int
    on_bound: tuple[str, ...]


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted Chinchilla law, the method's own objective value and diagnostics."""

    law: ChinchillaLaw
    method: str
    objective: float
    diagnostics: Diagnostics


def diagnose(law: ChinchillaLaw, runs: Runs, on_bound: tuple[str, ...] = ()) -> Diagnostics:
    return diagnose_predictions(law.predict(runs.params, runs.tokens), runs, on_bound)


def diagnose_predictions(
    predicted: NDArray[np.float64], runs: Runs, on_bound: tuple[str, ...] = ()
) -> Diagnostics:
    residuals = np.log(predicted) - np.log(runs.loss)
    return Diagnostics(
        rmse_log_loss=float(np.sqrt(np.mean(residuals**2))),
        max_abs_log_loss=float(np.max(np.abs(residuals))),
        runs=len(runs),
        on_bound=on_bound,
    )


def squared_error(law: ChinchillaLaw, runs: Runs) -> float:
    """Sum of squared errors on raw loss: the objective VPNLS minimises."""
    return float(np.sum((law.predict(runs.params, runs.tokens) - runs.loss) ** 2))
