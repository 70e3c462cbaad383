"""The Chinchilla form L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.laws.base import Exponent, LawParams, NonNegativeFloat, PositiveFloat


class ChinchillaLaw(LawParams):
    """E: irreducible loss; A/N^alpha: finite-model error; B/D^beta: finite-data error."""

    form: ClassVar[str] = "chinchilla"

    E: NonNegativeFloat
    A: PositiveFloat
    B: PositiveFloat
    alpha: Exponent
    beta: Exponent

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        """Loss in nats/token of N params trained on D tokens (broadcasts over arrays)."""
        n = np.asarray(params, dtype=np.float64)
        d = np.asarray(tokens, dtype=np.float64)
        return np.asarray(self.E + self.A * n**-self.alpha + self.B * d**-self.beta)

    def loss(self, params: float, tokens: float) -> float:
        """Scalar loss of one (N, D)."""
        return float(self.predict(params, tokens))

    def as_chinchilla(self) -> ChinchillaLaw:
        """Every planning law reduces to this form; this one already is it."""
        return self
