"""Gadre et al. 2024 over-training law: L(C, M) = E + (a M^eta + b M^-eta) C^-eta, M = D / N.

It is the Chinchilla form with alpha = beta = 2 eta, A = a 6^-eta, B = b 6^-eta (LAWS.md §3.2),
so every Chinchilla planning query applies to it unchanged.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import model_validator

from planner.errors import InvalidInput
from planner.laws.base import Exponent, LawParams, NonNegativeFloat, PositiveFloat
from planner.laws.chinchilla import ChinchillaLaw


class OvertrainingLaw(LawParams):
    """Loss as a function of compute C and token multiplier M; optional downstream error link."""

    form: ClassVar[str] = "overtraining"

    E: NonNegativeFloat
    a: PositiveFloat
    b: PositiveFloat
    eta: Exponent
    # Err(L) = epsilon - k exp(-gamma L): average top-1 downstream error from loss.
    epsilon: PositiveFloat | None = None
    k: PositiveFloat | None = None
    gamma: PositiveFloat | None = None

    @model_validator(mode="after")
    def _link_complete(self) -> OvertrainingLaw:
        given = [v is not None for v in (self.epsilon, self.k, self.gamma)]
        if any(given) and not all(given):
            raise ValueError("the downstream-error link needs all of epsilon, k and gamma")
        return self

    @property
    def has_error_link(self) -> bool:
        return self.epsilon is not None and self.k is not None and self.gamma is not None

    def as_chinchilla(self) -> ChinchillaLaw:
        """The equivalent Chinchilla parameters (exact, not an approximation)."""
        scale = 6.0**-self.eta
        return ChinchillaLaw(
            E=self.E, A=self.a * scale, B=self.b * scale, alpha=2 * self.eta, beta=2 * self.eta
        )

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        """Loss of N params trained on D tokens, via C = 6ND and M = D/N."""
        n = np.asarray(params, dtype=np.float64)
        d = np.asarray(tokens, dtype=np.float64)
        compute, multiplier = 6.0 * n * d, d / n
        reducible = self.a * multiplier**self.eta + self.b * multiplier**-self.eta
        return np.asarray(self.E + reducible * compute**-self.eta)

    def downstream_error(self, loss: float) -> float:
        """Average top-1 error predicted from loss; needs epsilon, k and gamma."""
        if self.epsilon is None or self.k is None or self.gamma is None:  # no link stored
            raise InvalidInput("parameters", "downstream error needs epsilon, k and gamma")
        return self.epsilon - self.k * math.exp(-self.gamma * loss)
