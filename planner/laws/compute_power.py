"""A saturating power law of compute as a storable final-loss form (`compute_power`):

    L(C) = L_inf + A·(C + C0)^-alpha,   C = k N D

Henighan et al. (2020)'s L_inf + A·C^-alpha when C0 = 0; with C0 > 0 it is Cherti et al.
(2023, LAION)'s a·(C + b)^c + d (A = a, C0 = b, alpha = -c, L_inf = d). For teams that only log
loss against compute. Like the BNSL forms it has no N/D split, so planning queries refuse it;
Predict works through C = k N D, k the FLOPs per parameter per token the law was fitted with.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import Infeasible
from planner.laws.base import Exponent, FiniteFloat, LawParams, NonNegativeFloat, PositiveFloat
from planner.laws.chinchilla import ChinchillaLaw

DEFAULT_FLOPS_PER_PARAM_TOKEN = 6.0
# Ensemble columns (the fitted parameters; k is not fitted).
COLUMNS = ("L_inf", "A", "alpha", "C0")


class ComputePowerLaw(LawParams):
    """L_inf: the loss approached with unlimited compute; A, alpha: the power law's scale and
    exponent; C0: a compute offset (0: the plain power law)."""

    form: ClassVar[str] = "compute_power"

    L_inf: FiniteFloat
    A: PositiveFloat
    alpha: Exponent
    C0: NonNegativeFloat = 0.0
    # Not fitted: the constant that turns (N, D) into the law's compute (C = k N D).
    k: PositiveFloat = DEFAULT_FLOPS_PER_PARAM_TOKEN

    def predict_compute(self, compute: ArrayLike) -> NDArray[np.float64]:
        c = np.asarray(compute, dtype=np.float64)
        with np.errstate(over="ignore", divide="ignore"):
            return np.asarray(self.L_inf + self.A * (c + self.C0) ** -self.alpha)

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        """Loss of N params trained on D tokens, through C = k N D."""
        n = np.asarray(params, dtype=np.float64)
        d = np.asarray(tokens, dtype=np.float64)
        return self.predict_compute(self.k * n * d)

    def row(self) -> tuple[float, float, float, float]:
        """The fitted parameters in COLUMNS order."""
        return (self.L_inf, self.A, self.alpha, self.C0)

    def as_chinchilla(self) -> ChinchillaLaw:
        """Refused: a law of compute alone says nothing about how to split C into N and D."""
        raise Infeasible(
            "a compute_power law is a curve of compute alone with no N/D split; planning "
            "queries need a chinchilla-family law (chinchilla, overtraining, data_constrained, "
            "sparse_avg_params)",
            field="form",
        )


def compute_power_losses(rows: ArrayLike, compute: ArrayLike) -> NDArray[np.float64]:
    """Each ensemble row's loss (rows in COLUMNS order) at `compute`: shape (rows,) for a
    scalar, (points, rows) for a column vector of computes. NaN/inf where a row overflows."""
    r = np.asarray(rows, dtype=np.float64)
    c = np.asarray(compute, dtype=np.float64)
    l_inf, a, alpha, c0 = r.T
    with np.errstate(all="ignore"):
        return np.asarray(l_inf + a * (c + c0) ** -alpha)
