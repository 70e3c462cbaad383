"""Compute budgets: schedulers count accelerator-hours, the laws count FLOPs."""

from __future__ import annotations

from planner.validation import in_unit_interval, positive

SECONDS_PER_HOUR = 3600.0


def flops_from_accelerator_hours(hours: float, peak_flops_per_second: float, mfu: float) -> float:
    """Training FLOPs delivered by `hours` accelerator-hours at `mfu` of peak throughput."""
    hours = positive("budget.accelerator.accelerator_hours", hours)
    peak = positive("budget.accelerator.peak_flops_per_second", peak_flops_per_second)
    mfu = in_unit_interval("budget.accelerator.mfu", mfu)
    return hours * SECONDS_PER_HOUR * peak * mfu
