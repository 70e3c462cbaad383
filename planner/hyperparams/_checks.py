"""Scalar input checks shared by the package: each failure is an InvalidInput naming the field."""

from __future__ import annotations

import math

from planner.errors import InvalidInput


def finite(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a number")
    if not math.isfinite(value):
        raise InvalidInput(field, "must be finite")
    return float(value)


def positive(field: str, value: float) -> float:
    value = finite(field, value)
    if not value > 0:
        raise InvalidInput(field, "must be > 0")
    return value
