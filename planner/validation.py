"""Checks for numbers arriving from outside: finite, positive, in range."""

from __future__ import annotations

import math

from planner.errors import InvalidInput


def finite(field: str, value: float) -> float:
    """The value as a float, rejecting NaN, infinities and what is not a number (True and "1"
    included: a float() that accepts them would hide a caller's mistake)."""
    if isinstance(value, bool | str | bytes):
        raise InvalidInput(field, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, f"must be a number, got {value!r}") from exc
    if math.isnan(number):
        raise InvalidInput(field, "must be a number, got NaN")
    if math.isinf(number):
        raise InvalidInput(field, "must be finite, got infinity")
    return number


def positive(field: str, value: float) -> float:
    """A finite float > 0."""
    number = finite(field, value)
    if number <= 0:
        raise InvalidInput(field, f"must be > 0, got {number:g}")
    return number


def non_negative(field: str, value: float) -> float:
    """A finite float >= 0."""
    number = finite(field, value)
    if number < 0:
        raise InvalidInput(field, f"must be >= 0, got {number:g}")
    return number


def in_unit_interval(field: str, value: float) -> float:
    """A finite float in (0, 1]."""
    number = positive(field, value)
    if number > 1:
        raise InvalidInput(field, f"must be in (0, 1], got {number:g}")
    return number


def optional_positive(field: str, value: float | None) -> float | None:
    """None stays None; anything else must be a finite float > 0."""
    return None if value is None else positive(field, value)
