"""Arithmetic that leaves the float range is a property of the request, not a bug."""

from __future__ import annotations

from collections.abc import Iterator
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
