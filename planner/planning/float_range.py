"""Arithmetic that leaves the float range is a property of the request, not a bug."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from planner.errors import Infeasible, PlannerError


@contextmanager
def out_of_range_refused(check: str) -> Iterator[None]:
    """Inside the block, an overflow or a math domain error (ArithmeticError, ValueError)
    becomes Infeasible asking the caller to check `check`; the domain's own errors pass."""
    try:
        yield
    except PlannerError:
        raise
    except (ArithmeticError, ValueError) as exc:
        raise Infeasible(
            f"this request leaves floating-point range for the law ({type(exc).__name__}: "
            f"{exc}); check {check} against the law's scale"
        ) from exc


def require_in_range(label: str, numbers: Iterable[float], **shown: float) -> None:
    """Raise Infeasible unless every number of a finished plan is finite and > 0; the message
    names the `label` ("optimum", "plan") with the `shown` values (formatted only on failure)."""
    if not all(math.isfinite(v) and v > 0 for v in numbers):
        values = ", ".join(f"{name} = {value:.6g}" for name, value in shown.items())
        raise Infeasible(
            f"the {label} ({values}) is outside floating-point range for this law and request"
        )
