"""Fit job of the Step Law form: learning rate and batch size from a grid of finished runs.

The procedure is planner.hyperparams.step_fit's: per (N, D) cell the run of lowest loss (kept
only when the grid brackets it), log-linear least squares through those optima, and a bootstrap
over cells. The version stores the fit on all cells; its intervals and ensemble come from the
bootstrap, in STEP_LAW_NAMES order (coefficients as values, not logs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.errors import InvalidInput
from planner.fitting.data import Array
from planner.hyperparams.step_fit import (
    CellOptima,
    bootstrap_step_law,
    cell_optima,
    fit_step_law,
)
from planner.hyperparams.step_law import StepLaw

STEP_LAW_METHOD = "least_squares"
# bootstrap_step_law needs two resamples for a spread; 0 means none.
MIN_RESAMPLES = 2


@dataclass(frozen=True)
class StepLawFit:
    law: StepLaw
    optima: CellOptima
    # (resamples kept, 5): lr_coefficient, lr_params_exponent, lr_tokens_exponent,
    # batch_coefficient, batch_tokens_exponent; empty without a bootstrap.
    ensemble: Array
    collinear: int  # resamples dropped: their cells could not separate log N from log D
    rmse_log_lr: float  # residuals of the optima about the law
    rmse_log_batch: float


@dataclass(frozen=True)
class StepLawJob:
    """Finished runs as columns (N, D, peak lr, batch in tokens, final loss), the bootstrap
    resamples (0: none) and their seed."""

    params: Array
    tokens: Array
    lr: Array
    batch_tokens: Array
    loss: Array
    resamples: int = 0
    seed: int = 0

    def validated(self) -> StepLawJob:
        if self.resamples != 0 and self.resamples < MIN_RESAMPLES:
            raise InvalidInput(
                "bootstrap",
                f"the step_law bootstrap needs at least {MIN_RESAMPLES} resamples (0 for none), "
                f"got {self.resamples}",
            )
        return self

    def fit(self) -> StepLawFit:
        optima = cell_optima(self.params, self.tokens, self.lr, self.batch_tokens, self.loss)
        law = fit_step_law(optima)
        ensemble, collinear = np.empty((0, 5)), 0
        if self.resamples:
            bootstrap = bootstrap_step_law(optima, self.resamples, self.seed)
            s = bootstrap.samples  # (ln a, alpha, beta, ln b, gamma)
            ensemble = np.column_stack(
                [np.exp(s[:, 0]), s[:, 1], s[:, 2], np.exp(s[:, 3]), s[:, 4]]
            )
            collinear = bootstrap.collinear
        lr_law = law.lr_coefficient * optima.params**law.lr_params_exponent
        lr_law = lr_law * optima.tokens**law.lr_tokens_exponent
        batch_law = law.batch_coefficient * optima.tokens**law.batch_tokens_exponent
        return StepLawFit(
            law=law,
            optima=optima,
            ensemble=ensemble,
            collinear=collinear,
            rmse_log_lr=_rmse(np.log(optima.learning_rate / lr_law)),
            rmse_log_batch=_rmse(np.log(optima.batch_tokens / batch_law)),
        )


def _rmse(residuals: Array) -> float:
    return float(np.sqrt(np.mean(residuals**2)))
