"""Input checks of the task-law package: each failure is an InvalidInput naming the field."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import InvalidInput

Array = NDArray[np.float64]


def whole(field: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(field, "must be an integer")
    if value < low:
        raise InvalidInput(field, f"must be >= {low}")
    return int(value)


def vector(field: str, values: ArrayLike, min_length: int = 1) -> Array:
    """A 1-D float array of finite values, at least min_length long."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, "must be a sequence of numbers") from exc
    if array.ndim != 1:
        raise InvalidInput(field, "must be one-dimensional")
    if array.size < min_length:
        raise InvalidInput(field, f"needs at least {min_length} values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(field, "must be finite")
    return array


def positive_vector(field: str, values: ArrayLike, min_length: int = 1) -> Array:
    array = vector(field, values, min_length)
    if not np.all(array > 0):
        raise InvalidInput(field, "must be > 0")
    return array


def accuracy_vector(field: str, values: ArrayLike, min_length: int = 1) -> Array:
    array = vector(field, values, min_length)
    if not np.all((array >= 0) & (array <= 1)):
        raise InvalidInput(field, "accuracies must lie in [0, 1]")
    return array


def same_length(fields: dict[str, Array]) -> None:
    lengths = {name: array.size for name, array in fields.items()}
    first_name, first = next(iter(lengths.items()))
    for name, length in lengths.items():
        if length != first:
            raise InvalidInput(name, f"has {length} values but {first_name} has {first}")
