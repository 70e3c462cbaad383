"""Jin et al. 2025 (LAWS.md §6): the Chinchilla form with N the average parameter count over
training, N_avg = (1/D) integral of N(t) dt, so sparse and dense runs share one law."""

from __future__ import annotations

from typing import ClassVar

from planner.laws.chinchilla import ChinchillaLaw


class SparseAvgParamsLaw(ChinchillaLaw):
    """L(N_avg, D) = E + A / N_avg^alpha + B / D^beta; a dense run has N_avg = N."""

    form: ClassVar[str] = "sparse_avg_params"

    def as_chinchilla(self) -> ChinchillaLaw:
        """The same parameters read as a plain Chinchilla law (N = N_avg)."""
        return ChinchillaLaw(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta)
