"""Muennighoff et al. 2023: the Chinchilla form on effective data D' and effective params N'.

Repeated tokens are worth less with each epoch (decay constant r_d_star) and parameters beyond
what the unique data supports are worth less too (r_n_star); LAWS.md §4.1. The unique data of a
run is U_D = min(D, U): a run shorter than the unique data available sees only D of it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.laws.base import Exponent, LawParams, NonNegativeFloat, PositiveFloat
from planner.laws.chinchilla import ChinchillaLaw


class DataConstrainedLaw(LawParams):
    """Chinchilla parameters plus the repetition decay constants R_D* and R_N*."""

    form: ClassVar[str] = "data_constrained"

    E: NonNegativeFloat
    A: PositiveFloat
    B: PositiveFloat
    alpha: Exponent
    beta: Exponent
    r_d_star: PositiveFloat
    r_n_star: PositiveFloat

    def as_chinchilla(self) -> ChinchillaLaw:
        """The law with unlimited unique data (no repetition): plain Chinchilla."""
        return ChinchillaLaw(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta)

    def effective_tokens(self, tokens: ArrayLike, unique_tokens: ArrayLike) -> NDArray[np.float64]:
        """D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = max(D/U_D - 1, 0)."""
        d = np.asarray(tokens, dtype=np.float64)
        return decayed_amount(
            d, np.minimum(np.asarray(unique_tokens, dtype=np.float64), d), self.r_d_star
        )

    def effective_params(
        self, params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike
    ) -> NDArray[np.float64]:
        """N' with U_N = min(N, N_opt(U_D)): params beyond the data's optimum decay like
        repeats."""
        n = np.asarray(params, dtype=np.float64)
        seen = np.minimum(np.asarray(unique_tokens, dtype=np.float64), np.asarray(tokens))
        supported = params_supported(seen, self.A, self.B, self.alpha, self.beta)
        return decayed_amount(n, np.minimum(n, supported), self.r_n_star)

    def predict(
        self, params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Loss with U unique tokens; without U the data is unlimited and this is Chinchilla."""
        if unique_tokens is None:
            return self.as_chinchilla().predict(params, tokens)
        n_eff = self.effective_params(params, tokens, unique_tokens)
        d_eff = self.effective_tokens(tokens, unique_tokens)
        return np.asarray(self.E + self.A * n_eff**-self.alpha + self.B * d_eff**-self.beta)


def decayed_amount(total: ArrayLike, unique: ArrayLike, r_star: ArrayLike) -> NDArray[np.float64]:
    """U + U R* (1 - exp(-R / R*)), R = total / U - 1 (unique <= total): the effective size of
    `total` tokens (or params) of which only `unique` are new. One rule for D' and N'."""
    t, u = np.asarray(total, dtype=np.float64), np.asarray(unique, dtype=np.float64)
    r = np.asarray(r_star, dtype=np.float64)
    repeats = np.maximum(t / u - 1.0, 0.0)
    return np.asarray(u + u * r * -np.expm1(-repeats / r))


def params_supported(
    unique: ArrayLike, A: ArrayLike, B: ArrayLike, alpha: ArrayLike, beta: ArrayLike
) -> NDArray[np.float64]:
    """N_opt(U): the size for which U tokens are compute-optimal (the repo's D_to_N,
    (U G)^(beta/alpha) G with G = (alpha A / (beta B))^(1/(alpha+beta)))."""
    g = (np.multiply(alpha, A) / np.multiply(beta, B)) ** (1.0 / np.add(alpha, beta))
    return np.asarray((np.asarray(unique) * g) ** (np.divide(beta, alpha)) * g)
