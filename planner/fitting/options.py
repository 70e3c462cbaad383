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


@dataclass(frozen=True)
class FitOptions:
    """How to fit E, A, B, alpha, beta.

    tie_exponents: alpha = beta (Gadre, Muennighoff practice); one exponent is searched.
    fixed: parameters held at given values, by name (e.g. E from a larger study, or exponents
        borrowed from another family's law); the others are fitted.
    overestimate_penalty: the loss of a run whose prediction is above its observed loss is
        multiplied by this (1: symmetric). A value > 1 makes the law err on the optimistic side
        less often (OLMo-core's overestimate_penalty).
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
            if name in ("alpha", "beta") and value > MAX_EXPONENT:
                raise InvalidInput(f"fixed.{name}", f"must be at most {MAX_EXPONENT:g}")
        values = self.fixed_values
        if self.tie_exponents and "alpha" in values and "beta" in values:
            if not math.isclose(values["alpha"], values["beta"], rel_tol=1e-12):
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
        if len(values) == len(PARAMETER_NAMES):
            raise InvalidInput("fixed", "every parameter is fixed; leave at least one to fit")
        return self

    @property
    def free_parameters(self) -> int:
        """Parameters the fit determines."""
        values = self.fixed_values
        free = len(PARAMETER_NAMES) - len(values)
        if self.tie_exponents and "alpha" not in values and "beta" not in values:
            free -= 1  # one exponent for both
        elif self.tie_exponents:
            free -= 1 if ("alpha" in values) != ("beta" in values) else 0
        return free

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
