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
        u = np.minimum(np.asarray(unique_tokens, dtype=np.float64), d)
        repeats = np.maximum(d / u - 1.0, 0.0)
        return np.asarray(u + u * self.r_d_star * (1.0 - np.exp(-repeats / self.r_d_star)))

    def effective_params(
        self, params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike
    ) -> NDArray[np.float64]:
        """N' with U_N = min(N, N_opt(U_D)): params beyond the data's optimum decay like
        repeats."""
        n = np.asarray(params, dtype=np.float64)
        u = np.minimum(np.asarray(unique_tokens, dtype=np.float64), np.asarray(tokens))
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        supported = np.minimum(n, (u * g) ** (self.beta / self.alpha) * g)
        excess = np.maximum(n / supported - 1.0, 0.0)
        return np.asarray(
            supported + supported * self.r_n_star * (1.0 - np.exp(-excess / self.r_n_star))
        )

    def predict(
        self, params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Loss with U unique tokens; without U the data is unlimited and this is Chinchilla."""
        if unique_tokens is None:
            return self.as_chinchilla().predict(params, tokens)
        n_eff = self.effective_params(params, tokens, unique_tokens)
        d_eff = self.effective_tokens(tokens, unique_tokens)
        return np.asarray(self.E + self.A * n_eff**-self.alpha + self.B * d_eff**-self.beta)
