"""Broken power laws (LAWS.md §7) as storable law forms, one per variable x:

    bnsl_compute   x = k N D (k: FLOPs per parameter per token the law was fitted with)
    bnsl_params    x = N
    bnsl_tokens    x = D

The variable is in the form name, so a family can hold one law of each. Parameters: a, b, c0
and, per break i = 1..3, c_i, d_i, f_i (all three or none; breaks numbered from 1 without gaps,
locations d_i non-decreasing). A BNSL has no N/D split, so planning queries refuse it.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import model_validator

from planner.errors import Infeasible, InvalidInput
from planner.laws.base import FiniteFloat, LawParams, PositiveFloat
from planner.laws.bnsl import MAX_BREAKS, Break, BrokenPowerLaw
from planner.laws.chinchilla import ChinchillaLaw

VARIABLES = ("compute", "params", "tokens")
DEFAULT_FLOPS_PER_PARAM_TOKEN = 6.0


def form_of(variable: str) -> str:
    """The stored form name of a BNSL of `variable` (compute, params or tokens)."""
    return f"bnsl_{variable}"


def columns(breaks: int) -> tuple[str, ...]:
    """Parameter names of a BNSL with `breaks` breaks, in ensemble column order:
    a, b, c0, then c_i, d_i, f_i for i = 1..breaks (the order of BrokenPowerLaw.to_mapping)."""
    names = ["a", "b", "c0"]
    for i in range(1, breaks + 1):
        names += [f"c{i}", f"d{i}", f"f{i}"]
    return tuple(names)


def row_of(curve: BrokenPowerLaw) -> tuple[float, ...]:
    """The parameters of `curve` in columns(len(breaks)) order, breaks sorted by location: the
    product over breaks does not depend on their order, and a fixed labelling lets the
    columns of a bootstrap ensemble mean the same break in every row."""
    values = [curve.a, curve.b, curve.c0]
    for brk in sorted(curve.breaks, key=lambda b: b.d):
        values += [brk.c, brk.d, brk.f]
    return tuple(values)


class BnslLaw(LawParams):
    """What the three BNSL forms share; subclasses fix the variable x."""

    variable: ClassVar[str]

    a: FiniteFloat
    b: PositiveFloat
    c0: FiniteFloat
    c1: FiniteFloat | None = None
    d1: PositiveFloat | None = None
    f1: PositiveFloat | None = None
    c2: FiniteFloat | None = None
    d2: PositiveFloat | None = None
    f2: PositiveFloat | None = None
    c3: FiniteFloat | None = None
    d3: PositiveFloat | None = None
    f3: PositiveFloat | None = None

    @model_validator(mode="after")
    def _breaks_well_formed(self) -> Self:
        present = []
        for i in range(1, MAX_BREAKS + 1):
            given = [getattr(self, f"{name}{i}") is not None for name in "cdf"]
            if any(given) and not all(given):
                raise ValueError(f"break {i} needs all of c{i}, d{i} and f{i}")
            present.append(all(given))
        for i in range(1, MAX_BREAKS):
            if present[i] and not present[i - 1]:
                raise ValueError(f"break {i + 1} is given without break {i}; number breaks 1, 2, 3")
        locations = [brk.d for brk in self.breaks]
        for i in range(1, len(locations)):
            if locations[i] < locations[i - 1]:
                raise ValueError(
                    f"break locations must not decrease: d{i + 1} = {locations[i]:g} < "
                    f"d{i} = {locations[i - 1]:g}"
                )
        return self

    @property
    def breaks(self) -> tuple[Break, ...]:
        found = []
        for i in range(1, MAX_BREAKS + 1):
            c, d, f = (getattr(self, f"{name}{i}") for name in "cdf")
            if c is None or d is None or f is None:
                break
            found.append(Break(float(c), float(d), float(f)))
        return tuple(found)

    def curve(self, fitted_up_to: float | None = None) -> BrokenPowerLaw:
        """The same law as the 1-D BrokenPowerLaw of x."""
        return BrokenPowerLaw(self.a, self.b, self.c0, self.breaks, fitted_up_to)

    @classmethod
    def from_curve(cls, curve: BrokenPowerLaw, **extra: float) -> Self:
        """The stored form of a 1-D law, breaks sorted by location (row_of).
        `extra`: k for bnsl_compute."""
        values = dict(zip(columns(len(curve.breaks)), row_of(curve), strict=True))
        return cls.from_mapping({**values, **extra})

    def x_of(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        """The law's variable for N params trained on D tokens."""
        raise NotImplementedError

    def predict_x(self, x: ArrayLike) -> NDArray[np.float64]:
        return self.curve().predict(x)

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        """Loss of N params trained on D tokens, through x."""
        return self.predict_x(self.x_of(params, tokens))

    def as_chinchilla(self) -> ChinchillaLaw:
        """Refused: a BNSL is a curve in one variable, not a surface over (N, D)."""
        raise Infeasible(
            f"a broken power law of {self.variable} has no N/D split; planning queries need a "
            "chinchilla-family law (chinchilla, overtraining, data_constrained, "
            "sparse_avg_params)",
            field="form",
        )


class BnslComputeLaw(BnslLaw):
    form: ClassVar[str] = form_of("compute")
    variable: ClassVar[str] = "compute"

    # Not fitted: the constant that defined x = k N D when the law was fitted.
    k: PositiveFloat = DEFAULT_FLOPS_PER_PARAM_TOKEN

    def x_of(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(
            self.k * np.asarray(params, dtype=np.float64) * np.asarray(tokens, dtype=np.float64)
        )


class BnslParamsLaw(BnslLaw):
    form: ClassVar[str] = form_of("params")
    variable: ClassVar[str] = "params"

    def x_of(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        return np.broadcast_arrays(
            np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
        )[0].copy()


class BnslTokensLaw(BnslLaw):
    form: ClassVar[str] = form_of("tokens")
    variable: ClassVar[str] = "tokens"

    def x_of(self, params: ArrayLike, tokens: ArrayLike) -> NDArray[np.float64]:
        return np.broadcast_arrays(
            np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
        )[1].copy()


BNSL_LAWS: dict[str, type[BnslLaw]] = {
    cls.variable: cls for cls in (BnslComputeLaw, BnslParamsLaw, BnslTokensLaw)
}


def bnsl_law(variable: str, curve: BrokenPowerLaw, k: float | None = None) -> BnslLaw:
    """The stored form of `curve` fitted against `variable`; k (bnsl_compute only) defaults
    to 6."""
    cls = BNSL_LAWS.get(variable)
    if cls is None:
        raise InvalidInput("variable", f"must be one of {list(VARIABLES)}, got {variable!r}")
    if cls is BnslComputeLaw:
        return cls.from_curve(curve, k=DEFAULT_FLOPS_PER_PARAM_TOKEN if k is None else k)
    return cls.from_curve(curve)
