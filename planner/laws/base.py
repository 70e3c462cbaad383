"""What every law form shares: frozen, validated parameters built from a name -> value map."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from planner.errors import InvalidInput


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(value: float) -> float:
    if not value >= 0:
        raise ValueError("must be >= 0")
    return value


# Published exponents lie between 0.05 and 0.8; beyond 5 every power overflows a float.
MAX_EXPONENT = 5.0


def _exponent(value: float) -> float:
    if value > MAX_EXPONENT:
        raise ValueError(f"must be at most {MAX_EXPONENT:g}")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]
PositiveFloat = Annotated[float, AfterValidator(_finite), AfterValidator(_positive)]
NonNegativeFloat = Annotated[float, AfterValidator(_finite), AfterValidator(_non_negative)]
Exponent = Annotated[
    float, AfterValidator(_finite), AfterValidator(_positive), AfterValidator(_exponent)
]


class LawParams(BaseModel):
    """Parameters of one law form. Subclasses declare fields and set `form`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=True)

    form: ClassVar[str]

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], field: str = "parameters") -> Self:
        """Build from a name -> value map, turning validation failures into InvalidInput."""
        known = set(cls.model_fields)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(
                f"{field}.{unknown[0]}",
                f"unknown parameter of form {cls.form!r}; expected {sorted(known)}",
            )
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            reason = "is required" if first["type"] == "missing" else first["msg"]
            reason = reason.removeprefix("Value error, ")
            # Checks across parameters have no location: name the whole map.
            raise InvalidInput(f"{field}.{name}" if name else field, reason) from exc

    def to_mapping(self) -> dict[str, float]:
        """The parameters as a name -> value map (unset optional ones left out)."""
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}
