"""Options of a Chinchilla-form fit that real teams set: tied exponents, pinned parameters and an
asymmetric penalty on over-estimates. Per-run weights travel with the runs (Runs.weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import InvalidInput

PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta")
# An exponent beyond this overflows every power of a real N or D (laws.base.MAX_EXPONENT).
MAX_EXPONENT = 5.0
MAX_PENALTY = 1e3
# Fixed values beyond these leave float range in the fits; real laws are far inside (E is a
# loss in nats, A and B are in the hundreds to thousands).
MAX_FIXED = {"E": 1e3, "A": 1e30, "B": 1e30, "alpha": MAX_EXPONENT, "beta": MAX_EXPONENT}


@dataclass(frozen=True)
class FitOptions:
    """How to fit E, A, B, alpha, beta.

    tie_exponents: alpha = beta (Gadre, Muennighoff practice); one exponent is searched.
    fixed: parameters held at given values, by name (e.g. E from a larger study, or exponents
        borrowed from another family's law); the others are fitted.
    overestimate_penalty: the loss of a row whose prediction is above its observed loss
        (r = ln predicted - ln observed > 0) is multiplied by this (1: symmetric). A value > 1
        pulls the law toward the lower edge of the runs, i.e. the loss a well-tuned run reaches
        (OLMo-core's overestimate_penalty; kyo-takano/chinchilla's asymmetric loss).
    """

    tie_exponents: bool = False
    fixed: tuple[tuple[str, float], ...] = ()
    overestimate_penalty: float = 1.0

    @classmethod
    def of(
        cls,
        tie_exponents: bool = False,
        fixed: Mapping[str, float] | None = None,
        overestimate_penalty: float = 1.0,
    ) -> FitOptions:
        return cls(
            tie_exponents, tuple(sorted((fixed or {}).items())), overestimate_penalty
        ).validated()

    @property
    def fixed_values(self) -> dict[str, float]:
        return dict(self.fixed)

    @property
    def is_default(self) -> bool:
        return self == FitOptions()

    def validated(self) -> FitOptions:
        names = [name for name, _ in self.fixed]
        if len(set(names)) != len(names):
            raise InvalidInput("fixed", f"a parameter is fixed twice: {names}")
        for name, value in self.fixed:
            if name not in PARAMETER_NAMES:
                raise InvalidInput(
                    f"fixed.{name}", f"unknown parameter; fixable: {list(PARAMETER_NAMES)}"
                )
            if not math.isfinite(value):
                raise InvalidInput(f"fixed.{name}", f"must be finite, got {value}")
            if name == "E" and value < 0:
                raise InvalidInput("fixed.E", f"must be >= 0, got {value:g}")
            if name != "E" and value <= 0:
                raise InvalidInput(f"fixed.{name}", f"must be > 0, got {value:g}")
            if value > MAX_FIXED[name]:
                raise InvalidInput(f"fixed.{name}", f"must be at most {MAX_FIXED[name]:g}")
        values = self.fixed_values
        both = self.tie_exponents and "alpha" in values and "beta" in values
        if both and not math.isclose(values["alpha"], values["beta"], rel_tol=1e-12):
            raise InvalidInput(
                "tie_exponents",
                f"alpha = {values['alpha']:g} and beta = {values['beta']:g} are fixed to "
                "different values; they cannot also be tied",
            )
        penalty = self.overestimate_penalty
        if not (math.isfinite(penalty) and 0 < penalty <= MAX_PENALTY):
            raise InvalidInput(
                "overestimate_penalty", f"must be in (0, {MAX_PENALTY:g}], got {penalty}"
            )
        if self.free_parameters == 0:
            # Also E, A, B and one exponent fixed with tied exponents: the tie fixes the other.
            raise InvalidInput("fixed", "every parameter is fixed; leave at least one to fit")
        return self

    @property
    def pinned(self) -> dict[str, float]:
        """The fixed values, with a tie carried over: alpha = beta and one of them fixed fixes
        the other at the same value."""
        values = self.fixed_values
        if self.tie_exponents:
            for name, other in (("alpha", "beta"), ("beta", "alpha")):
                if name in values:
                    values.setdefault(other, values[name])
        return values

    @property
    def shares_exponent(self) -> bool:
        """One exponent is searched and used for both alpha and beta."""
        values = self.fixed_values
        return self.tie_exponents and "alpha" not in values and "beta" not in values

    @property
    def free_parameters(self) -> int:
        """Parameters the fit determines."""
        return len(PARAMETER_NAMES) - len(self.pinned) - (1 if self.shares_exponent else 0)

    def describe(self) -> dict[str, str]:
        """The options as the strings stored with a law version (only those set)."""
        described: dict[str, str] = {}
        if self.tie_exponents:
            described["tie_exponents"] = "true"
        for name, value in self.fixed:
            described[f"fixed.{name}"] = repr(value)
        if self.overestimate_penalty != 1.0:
            described["overestimate_penalty"] = repr(self.overestimate_penalty)
        return described


# The default (a frozen value, so safe as a shared argument default).
DEFAULT_OPTIONS = FitOptions()
