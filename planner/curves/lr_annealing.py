"""Scaling law with learning-rate annealing (Tissue, Wang, Wang 2024, arXiv 2408.11029;
LAWS.md §8.2):

    L(s) = L0 + A S1(s)^-alpha - C S2(s)
    S1(s) = sum_{i=0..s} eta_i                                        (forward area)
    m_i = lambda m_{i-1} + (eta_{i-1} - eta_i),  m_0 = 0
    S2(s) = sum_{i=1..s} m_i                                          (annealing area)

with the same per-step schedule convention as the Multi-Power Law (planner.curves.schedules:
step 0 first, warm-up included). The momentum recursion is a first-order linear filter of the LR
decrements, so S2 is one scipy.signal.lfilter pass and a cumulative sum; its closed form
S2(s) = sum_j (eta_{j-1} - eta_j) (1 - lambda^(s-j+1)) / (1 - lambda) shows it is linear in the
schedule. The decay lambda is a parameter of the law (default 0.999, the paper's typical value);
the fit holds it fixed unless asked to fit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.signal import lfilter

from planner.curves.multi_power import validate_steps
from planner.curves.schedules import Array, validate_lrs
from planner.errors import InvalidInput
from planner.validation import finite, non_negative, positive

DEFAULT_DECAY = 0.999


def _decrements(lrs: Array) -> Array:
    change = np.zeros_like(lrs)
    change[1:] = lrs[:-1] - lrs[1:]
    return change


def forward_area(lrs: ArrayLike) -> Array:
    """S1 at every step: the LR summed over steps 0..s."""
    return np.cumsum(validate_lrs(lrs))


def _momentum(change: Array, decay: float) -> Array:
    return np.asarray(lfilter([1.0], [1.0, -decay], change))


def annealing_area(lrs: ArrayLike, decay: float = DEFAULT_DECAY) -> Array:
    """S2 at every step (the momentum form; 0 while the LR has not changed)."""
    return np.cumsum(_momentum(_decrements(validate_lrs(lrs)), validate_decay(decay)))


def annealing_area_and_slope(lrs: Array, decay: float) -> tuple[Array, Array]:
    """S2 at every step and its derivative with respect to the decay lambda.

    d m_i / d lambda = m_{i-1} + lambda d m_{i-1} / d lambda: the same filter applied to the
    momentum delayed by one step."""
    momentum = _momentum(_decrements(lrs), decay)
    delayed = np.zeros_like(momentum)
    delayed[1:] = momentum[:-1]
    return np.cumsum(momentum), np.cumsum(_momentum(delayed, decay))


def validate_decay(value: float, field: str = "decay") -> float:
    """The momentum factor lambda: a finite number in [0, 1)."""
    decay = non_negative(field, value)
    if decay >= 1:
        raise InvalidInput(field, f"must be in [0, 1), got {decay:g}")
    return decay


@dataclass(frozen=True)
class AnnealingLaw:
    """Parameters of the LR-annealing law; `decay` is the momentum factor lambda."""

    L0: float
    A: float
    alpha: float
    C: float
    decay: float = DEFAULT_DECAY

    form: ClassVar[str] = "lr_annealing"
    NAMES: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "C", "decay")

    def __post_init__(self) -> None:
        object.__setattr__(self, "L0", finite("parameters.L0", self.L0))
        object.__setattr__(self, "A", non_negative("parameters.A", self.A))
        object.__setattr__(self, "alpha", positive("parameters.alpha", self.alpha))
        object.__setattr__(self, "C", finite("parameters.C", self.C))
        object.__setattr__(self, "decay", validate_decay(self.decay, "parameters.decay"))

    def to_mapping(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.NAMES}

    def predict(self, lrs: ArrayLike, steps: ArrayLike) -> Array:
        """Loss after each of `steps` (indices into the per-step schedule `lrs`)."""
        schedule = validate_lrs(lrs)
        index = validate_steps(steps, schedule.size)
        s1 = np.cumsum(schedule)[index]
        if np.any(s1 <= 0):
            raise InvalidInput("steps", "the LR summed up to a requested step is 0: undefined")
        s2 = annealing_area(schedule, self.decay)[index]
        return np.asarray(self.L0 + self.A * s1 ** (-self.alpha) - self.C * s2)
