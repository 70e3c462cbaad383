"""Two recipes compared on one axis of compute: where their loss curves cross, which wins in
each range, and the compute multiplier m(C) = C_B(L_A(C)) / C — what B needs, relative to A's
budget C, to reach the loss A reaches with C.

A recipe is its loss as a decreasing function of compute, `LossOfCompute`:
- `SaturatingPowerLaw`  L(C) = L_inf + A·C^-alpha (Henighan et al. 2020);
- `OffsetPowerLaw`      L(C) = a·(C + b)^c + d, c < 0 (the form of Cherti et al. 2023, LAION);
- `ChinchillaAlong`     a Chinchilla-form law of (N, D) along a path through (N, D) space: at a
  fixed tokens-per-parameter ratio M (N = sqrt(C / (k M)), D = M N) or compute-optimally.
Over-training laws (Gadre et al. 2024) at a fixed M are saturating power laws of compute.
Stored laws of compute become recipes through `power_of_compute` (compute_power, exactly an
`OffsetPowerLaw`) and `BnslOfCompute` (bnsl_compute, inverted numerically; refused where it rises
with compute); `OnAcceleratorHours` puts any recipe on an axis of accelerator-hours.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from planner.errors import Infeasible, InvalidInput
from planner.laws.bnsl import BrokenPowerLaw
from planner.laws.chinchilla import ChinchillaLaw
from planner.laws.compute_power import ComputePowerLaw
from planner.validation import finite, positive

Array = NDArray[np.float64]
Winner = Literal["first", "second", "tie"]

# Compute axis searched for inverses: far wider than any budget asked about.
LOG_COMPUTE_RANGE = (math.log(1e-30), math.log(1e80))
# Sign changes of L_A - L_B are looked for on this many log-spaced points, then refined.
CROSSOVER_GRID = 4001
# Relative loss gap below which the two curves are called a tie rather than a crossing.
TIE_TOLERANCE = 1e-12
# A broken power law is checked for rising on this many log-spaced points of its range.
MONOTONE_GRID = 2001
SECONDS_PER_HOUR = 3600.0


class LossOfCompute(Protocol):
    """A recipe's loss as a strictly decreasing function of compute, approaching `floor`."""

    @property
    def floor(self) -> float: ...

    def loss(self, compute: ArrayLike) -> Array: ...

    def compute_for(self, loss: float) -> float:
        """The compute reaching `loss`; inf when `loss` is at or below the floor."""
        ...


@dataclass(frozen=True)
class SaturatingPowerLaw:
    """L(C) = l_inf + a·C^-alpha."""

    l_inf: float
    a: float
    alpha: float

    def __post_init__(self) -> None:
        finite("l_inf", self.l_inf)
        positive("a", self.a)
        positive("alpha", self.alpha)

    @property
    def floor(self) -> float:
        return self.l_inf

    def loss(self, compute: ArrayLike) -> Array:
        c = np.asarray(compute, dtype=np.float64)
        return np.asarray(self.l_inf + self.a * c**-self.alpha)

    def compute_for(self, loss: float) -> float:
        excess = loss - self.l_inf
        if excess <= 0:
            return math.inf
        return float((self.a / excess) ** (1.0 / self.alpha))


@dataclass(frozen=True)
class OffsetPowerLaw:
    """L(C) = a·(C + b)^c + d with a > 0, b >= 0, c < 0: decreasing, approaching d."""

    a: float
    b: float
    c: float
    d: float

    def __post_init__(self) -> None:
        positive("a", self.a)
        if finite("b", self.b) < 0:
            raise InvalidInput("b", f"must be >= 0, got {self.b}")
        if finite("c", self.c) >= 0:
            raise InvalidInput("c", f"must be < 0 (a decreasing curve), got {self.c}")
        finite("d", self.d)

    @property
    def floor(self) -> float:
        return self.d

    def loss(self, compute: ArrayLike) -> Array:
        x = np.asarray(compute, dtype=np.float64)
        return np.asarray(self.a * (x + self.b) ** self.c + self.d)

    def compute_for(self, loss: float) -> float:
        excess = loss - self.d
        if excess <= 0:
            return math.inf
        # Below C = 0 the curve is not defined; a loss above L(0) needs no compute.
        return max(0.0, float((excess / self.a) ** (1.0 / self.c) - self.b))


@dataclass(frozen=True)
class ChinchillaAlong:
    """A Chinchilla-form law along a path: `multiplier` tokens per parameter (D = M N), or the
    compute-optimal split when `multiplier` is None; `flops_per_param_token` is k in C = k N D."""

    law: ChinchillaLaw
    multiplier: float | None = None
    flops_per_param_token: float = 6.0

    def __post_init__(self) -> None:
        if self.multiplier is not None:
            positive("multiplier", self.multiplier)
        positive("flops_per_param_token", self.flops_per_param_token)

    @property
    def floor(self) -> float:
        return float(self.law.E)

    def split(self, compute: ArrayLike) -> tuple[Array, Array]:
        """(N, D) at each compute on the path."""
        c = np.asarray(compute, dtype=np.float64) / self.flops_per_param_token
        if self.multiplier is not None:
            params = np.sqrt(c / self.multiplier)
            return params, self.multiplier * params
        # Hoffmann et al. (2022) eq. 4: N_opt = G (C/k)^(beta/(alpha+beta)), D_opt = (C/k) / N_opt.
        law = self.law
        g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / (law.alpha + law.beta))
        params = g * c ** (law.beta / (law.alpha + law.beta))
        return params, c / params

    def loss(self, compute: ArrayLike) -> Array:
        params, tokens = self.split(compute)
        return self.law.predict(params, tokens)

    def compute_for(self, loss: float) -> float:
        return _inverse(self, loss)


def power_of_compute(law: ComputePowerLaw) -> OffsetPowerLaw:
    """A compute_power law L_inf + A (C + C0)^-alpha as the recipe it already is."""
    return OffsetPowerLaw(a=law.A, b=law.C0, c=-law.alpha, d=law.L_inf)


@dataclass(frozen=True)
class BnslOfCompute:
    """A broken power law of compute, checked to fall over [low, high] (the computes the
    comparison looks at): a BNSL may rise past a break, and a rising curve has no inverse.
    Outside the range the inverse is searched too, trusting the law's asymptotic slope."""

    law: BrokenPowerLaw
    low: float
    high: float

    def __post_init__(self) -> None:
        lo, hi = _compute_range(self.low, self.high)
        grid = np.geomspace(lo, hi, MONOTONE_GRID)
        losses = self.law.predict(grid)
        rises = np.flatnonzero(np.diff(losses) > TIE_TOLERANCE * np.abs(losses[:-1]))
        if rises.size:
            i = int(rises[0])
            raise Infeasible(
                f"the bnsl_compute law rises with compute between {grid[i]:.3g} and "
                f"{grid[i + 1]:.3g} FLOPs (loss {losses[i]:.6g} -> {losses[i + 1]:.6g}); a "
                f"comparison needs a loss that falls with compute over {lo:.3g} to {hi:.3g}",
                field="law",
            )

    @property
    def floor(self) -> float:
        # Past every break the slope is c0 + sum(c_i): falling, the curve approaches a; else
        # the lowest loss is the one at the top of the checked range.
        slope = self.law.c0 + sum(brk.c for brk in self.law.breaks)
        return self.law.a if slope > 0 else float(self.law.predict(self.high))

    def loss(self, compute: ArrayLike) -> Array:
        return self.law.predict(compute)

    def compute_for(self, loss: float) -> float:
        top, bottom = (float(self.law.predict(c)) for c in (self.low, self.high))
        if bottom <= loss <= top:  # in the checked range, where the root is unique

            def gap(log_c: float) -> float:
                return float(self.law.predict(math.exp(log_c))) - loss

            lo, hi = math.log(self.low), math.log(self.high)
            return math.exp(brentq(gap, lo, hi, xtol=1e-13, rtol=1e-14))
        return _inverse(self, loss)


@dataclass(frozen=True)
class OnAcceleratorHours:
    """A recipe on an axis of accelerator-hours: hours h cost C = 3600 h F FLOPs at its
    achieved FLOP/s per accelerator F, so a recipe faster per FLOP gets a lower cost."""

    curve: LossOfCompute
    flops_per_second: float

    def __post_init__(self) -> None:
        positive("flops_per_second", self.flops_per_second)

    @property
    def floor(self) -> float:
        return self.curve.floor

    def _flops(self, hours: ArrayLike) -> Array:
        return np.asarray(
            np.asarray(hours, dtype=np.float64) * SECONDS_PER_HOUR * self.flops_per_second
        )

    def loss(self, compute: ArrayLike) -> Array:
        return self.curve.loss(self._flops(compute))

    def compute_for(self, loss: float) -> float:
        return self.curve.compute_for(loss) / (SECONDS_PER_HOUR * self.flops_per_second)


@dataclass(frozen=True)
class OnParams:
    """A recipe at a fixed `multiplier` M tokens per parameter on an axis of parameters N: its
    compute is C = k M N^2 (D = M N), so the "multiplier" between two recipes on this axis is a
    ratio of model sizes."""

    curve: LossOfCompute
    multiplier: float
    flops_per_param_token: float

    def __post_init__(self) -> None:
        positive("multiplier", self.multiplier)
        positive("flops_per_param_token", self.flops_per_param_token)

    @property
    def floor(self) -> float:
        return self.curve.floor

    def loss(self, compute: ArrayLike) -> Array:
        params = np.asarray(compute, dtype=np.float64)
        return self.curve.loss(self.flops_per_param_token * self.multiplier * params**2)

    def compute_for(self, loss: float) -> float:
        flops = self.curve.compute_for(loss)
        return math.sqrt(flops / (self.flops_per_param_token * self.multiplier))


def _inverse(curve: LossOfCompute, loss: float) -> float:
    """Compute reaching `loss` on a decreasing curve, by root finding in log compute."""
    if loss <= curve.floor:
        return math.inf
    low, high = LOG_COMPUTE_RANGE

    def gap(log_c: float) -> float:
        return float(curve.loss(math.exp(log_c))) - loss

    if gap(low) <= 0:
        return math.exp(low)
    if gap(high) > 0:
        return math.inf
    return math.exp(brentq(gap, low, high, xtol=1e-13, rtol=1e-14))


def _compute_range(low: float, high: float) -> tuple[float, float]:
    lo = positive("compute_low", low)
    hi = positive("compute_high", high)
    if not lo < hi:
        raise InvalidInput("compute_high", f"must be above compute_low ({lo:g}), got {hi:g}")
    return lo, hi


def crossovers(first: LossOfCompute, second: LossOfCompute, low: float, high: float) -> list[float]:
    """Computes in [low, high] where the two curves reach the same loss, in increasing order."""
    lo, hi = _compute_range(low, high)
    logs = np.linspace(math.log(lo), math.log(hi), CROSSOVER_GRID)

    def gap(log_c: float) -> float:
        c = math.exp(log_c)
        return float(first.loss(c)) - float(second.loss(c))

    values = first.loss(np.exp(logs)) - second.loss(np.exp(logs))
    found: list[float] = []
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
        found.append(math.exp(brentq(gap, logs[i], logs[i + 1], xtol=1e-13, rtol=1e-14)))
    # A grid point exactly on a crossing (values == 0) between two non-zero neighbours.
    for i in np.flatnonzero(values == 0):
        if 0 < i < len(values) - 1 and values[i - 1] * values[i + 1] < 0:
            found.append(float(math.exp(logs[i])))
    return sorted(found)


@dataclass(frozen=True)
class Stretch:
    """A range of compute over which one recipe reaches the lower loss."""

    low: float
    high: float
    winner: Winner


def winners(first: LossOfCompute, second: LossOfCompute, low: float, high: float) -> list[Stretch]:
    """[low, high] cut at the crossovers, each piece labelled with the recipe of lower loss."""
    lo, hi = _compute_range(low, high)
    edges = [lo, *crossovers(first, second, lo, hi), hi]
    stretches = []
    for left, right in itertools.pairwise(edges):
        middle = math.sqrt(left * right)
        a, b = float(first.loss(middle)), float(second.loss(middle))
        if abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b)):
            winner: Winner = "tie"
        else:
            winner = "first" if a < b else "second"
        stretches.append(Stretch(left, right, winner))
    return stretches


def compute_multiplier(
    first: LossOfCompute, second: LossOfCompute, budgets: Sequence[float]
) -> list[float]:
    """m(C) = C_second(L_first(C)) / C at each budget: above 1 where the second recipe needs
    more compute to match the first; inf where the first reaches a loss the second never does."""
    multipliers = []
    for i, budget in enumerate(budgets):
        c = positive(f"budgets[{i}]", budget)
        multipliers.append(second.compute_for(float(first.loss(c))) / c)
    return multipliers
