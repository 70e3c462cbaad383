"""Broken neural scaling law (Caballero et al. 2022, LAWS.md §7), a flexible 1-D law:

    y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i),   i = 1..n (0 to 3 breaks)

x is compute, params or data; y a loss or an error rate. Segments between breaks are power laws
with slope -(c0 + ... + c_i); negative c_i bend the curve upward, so non-monotone (double
descent, inverse scaling) curves are representable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import InvalidInput
from planner.validation import finite, positive

MAX_BREAKS = 3


@dataclass(frozen=True)
class Break:
    """One break: slope change c, location d (> 0, in x units), sharpness f (> 0)."""

    c: float
    d: float
    f: float


@dataclass(frozen=True)
class BrokenPowerLaw:
    a: float
    b: float
    c0: float
    breaks: tuple[Break, ...] = ()
    # The largest x among the data the law was fitted to; beyond it predictions extrapolate.
    fitted_up_to: float | None = None

    def __post_init__(self) -> None:
        finite("a", self.a)
        positive("b", self.b)
        finite("c0", self.c0)
        if len(self.breaks) > MAX_BREAKS:
            raise InvalidInput("breaks", f"at most {MAX_BREAKS} breaks, got {len(self.breaks)}")
        for i, brk in enumerate(self.breaks, start=1):
            finite(f"c{i}", brk.c)
            positive(f"d{i}", brk.d)
            positive(f"f{i}", brk.f)

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        values = np.asarray(x, dtype=np.float64)
        if np.any(values <= 0) or not np.all(np.isfinite(values)):
            raise InvalidInput("x", "must be finite and > 0")
        # In logs: the product of many powers under/overflows long before the result does.
        log_term = np.log(self.b) - self.c0 * np.log(values)
        for brk in self.breaks:
            log_ratio = (np.log(values) - np.log(brk.d)) / brk.f
            log_term -= brk.c * brk.f * np.logaddexp(0.0, log_ratio)
        return np.asarray(self.a + np.exp(log_term))

    def to_mapping(self) -> dict[str, float]:
        """a, b, c0, then c_i, d_i, f_i for each break i = 1..n."""
        values = {"a": self.a, "b": self.b, "c0": self.c0}
        for i, brk in enumerate(self.breaks, start=1):
            values.update({f"c{i}": brk.c, f"d{i}": brk.d, f"f{i}": brk.f})
        return values

    def extrapolates(self, x: float) -> bool:
        """Whether x lies beyond the fitted data (the answer is then a guess, flagged)."""
        return self.fitted_up_to is not None and x > self.fitted_up_to
