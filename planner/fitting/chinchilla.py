"""Fit the Chinchilla form by a named method, and bootstrap ensembles of such fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.errors import InvalidInput, PlannerError, SolverFailed
from planner.fitting.data import Runs
from planner.fitting.huber import fit_huber
from planner.fitting.options import DEFAULT_OPTIONS, FitOptions
from planner.fitting.options import PARAMETER_NAMES as PARAMETER_NAMES
from planner.fitting.result import ChinchillaFit
from planner.fitting.vpnls import fit_vpnls
from planner.laws import ChinchillaLaw

METHODS = ("vpnls", "huber")
# Free parameters without options (FitOptions.free_parameters counts them with options).
FREE_PARAMETERS = 5
MAX_RESAMPLES = 1000


def fit_chinchilla(
    runs: Runs,
    method: str = "vpnls",
    start: ChinchillaLaw | None = None,
    options: FitOptions = DEFAULT_OPTIONS,
) -> ChinchillaFit:
    """Fit with `method` and `options`. With `start` (the full-data fit, for bootstrap
    resamples) the search refines from it instead of searching the whole grid."""
    if method not in METHODS:
        raise InvalidInput("method", f"unknown fit method {method!r}; known: {list(METHODS)}")
    try:
        if method == "vpnls":
            exponents = None if start is None else (start.alpha, start.beta)
            return fit_vpnls(runs, start=exponents, options=options)
        # A resample starts from the full fit alone; the grid is searched only if that fails.
        return fit_huber(
            runs, local_starts=0 if start is not None else 30, start=start, options=options
        )
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        # Values that leave float range inside the solvers (huge fixed parameters, ...).
        raise SolverFailed(f"the {method} fit failed numerically: {exc}") from exc


def resample_indices(size: int, resamples: int, seed: int) -> NDArray[np.intp]:
    """`resamples` rows of `size` run indices drawn with replacement (reproducible by seed)."""
    return np.random.default_rng(seed).integers(0, size, size=(resamples, size))


def bootstrap_fits(
    runs: Runs,
    method: str,
    indices: Sequence[NDArray[np.intp]] | NDArray[np.intp],
    start: ChinchillaLaw | None = None,
    options: FitOptions = DEFAULT_OPTIONS,
) -> NDArray[np.float64]:
    """One parameter vector (E, A, B, alpha, beta) per resample: `indices` holds one 1-D array
    of row indices each (of any lengths, e.g. a cluster bootstrap drawing whole training runs;
    a 2-D array is a sequence of its rows). NaN rows where the resample could not be fitted
    (e.g. it drew a single model size)."""
    vectors = np.full((len(indices), len(PARAMETER_NAMES)), np.nan)
    for row, index in enumerate(indices):
        try:
            law = fit_chinchilla(runs.subset(np.asarray(index)), method, start, options).law
        except PlannerError:
            continue
        vectors[row] = [law.E, law.A, law.B, law.alpha, law.beta]
    return vectors


@dataclass(frozen=True)
class Ensemble:
    """Bootstrap parameter vectors and their 95% percentile intervals."""

    vectors: NDArray[np.float64]
    failed: int

    @classmethod
    def of(cls, vectors: NDArray[np.float64]) -> Ensemble:
        ok = np.all(np.isfinite(vectors), axis=1)
        return cls(vectors=vectors[ok], failed=int((~ok).sum()))

    def intervals(self, names: tuple[str, ...] = PARAMETER_NAMES) -> dict[str, tuple[float, float]]:
        """95% percentile interval of each parameter, by name (`names`: the columns)."""
        if len(self.vectors) == 0:
            return {}
        low, high = np.percentile(self.vectors, [2.5, 97.5], axis=0)
        return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}
