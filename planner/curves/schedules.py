"""Per-step learning-rate schedules: the input of every loss-curve law in this package.

A schedule is a 1-D float array `lrs` with `lrs[s]` the learning rate used at step s (s = 0, 1,
..., total_steps - 1). The builders follow the conventions of Luo et al.'s Multi-Power Law code
(thu-yao-01-luo/MultiPowerLaw, src/lr_schedules.py), so that they reproduce, to float rounding,
the `lr` column of the published loss curves (shared data `lr_schedules/`):

* linear warm-up over the first `warmup_steps` steps from 0 to the peak, inclusive at both ends
  (numpy.linspace(0, peak, warmup_steps)): step 0 trains at LR 0, step warmup_steps - 1 at the peak;
* cosine: floor + (peak - floor) (1 + cos(pi (s - W) / (T - W))) / 2 for s >= W;
* WSD: the peak until `decay_start`, then a decay reaching the floor at step T (one step past the
  end, so the last step sits just above it), `exponential` being the geometric interpolation
  peak^((T - s)/(T - D)) floor^((s - D)/(T - D));
* two-stage: the peak until `switch_step`, then a second constant LR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.errors import InvalidInput
from planner.validation import non_negative, positive

Array = NDArray[np.float64]

# Longer schedules make every curve evaluation (and the arrays behind it) needlessly large;
# a million steps is beyond any run the planner sizes with these laws.
MAX_STEPS = 1_000_000

DecayShape = Literal["linear", "exponential", "cosine", "sqrt"]
DECAY_SHAPES: tuple[str, ...] = get_args(DecayShape)


def validate_lrs(lrs: ArrayLike, field: str = "lrs") -> Array:
    """A schedule as a float array: 1-D, 1..MAX_STEPS steps, finite and >= 0 everywhere."""
    try:
        values = np.asarray(lrs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, "must be a sequence of numbers") from exc
    if values.ndim != 1:
        raise InvalidInput(field, f"must be one-dimensional, got {values.ndim} dimensions")
    if values.size == 0:
        raise InvalidInput(field, "must hold at least one step")
    if values.size > MAX_STEPS:
        raise InvalidInput(field, f"must hold at most {MAX_STEPS:,} steps, got {values.size:,}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InvalidInput(field, f"must all be finite numbers (step {bad[0]} is {values[bad[0]]})")
    negative = np.flatnonzero(values < 0)
    if negative.size:
        raise InvalidInput(
            field, f"must all be >= 0 (step {negative[0]} is {values[negative[0]]:g})"
        )
    return values


def _steps(field: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(field, f"must be an integer, got {value!r}")
    number = int(value)
    if number < low:
        raise InvalidInput(field, f"must be >= {low}, got {number}")
    if number > MAX_STEPS:
        raise InvalidInput(field, f"must be at most {MAX_STEPS:,}, got {number:,}")
    return number


def _common(total_steps: int, peak_lr: float, warmup_steps: int) -> tuple[int, float, int]:
    total = _steps("total_steps", total_steps)
    peak = positive("peak_lr", peak_lr)
    warmup = _steps("warmup_steps", warmup_steps, low=0)
    if warmup > total:
        raise InvalidInput("warmup_steps", f"must be at most total_steps ({total}), got {warmup}")
    return total, peak, warmup


def _floor(floor_lr: float, peak: float) -> float:
    floor = non_negative("floor_lr", floor_lr)
    if floor > peak:
        raise InvalidInput("floor_lr", f"must be at most peak_lr ({peak:g}), got {floor:g}")
    return floor


def _with_warmup(total: int, peak: float, warmup: int) -> Array:
    """The peak everywhere, the first `warmup` steps replaced by the linear ramp from 0."""
    lrs = np.full(total, peak)
    lrs[:warmup] = np.linspace(0.0, peak, warmup)
    return lrs


def constant(total_steps: int, peak_lr: float, warmup_steps: int = 0) -> Array:
    """The peak LR after the warm-up."""
    total, peak, warmup = _common(total_steps, peak_lr, warmup_steps)
    return _with_warmup(total, peak, warmup)


def cosine(total_steps: int, peak_lr: float, floor_lr: float = 0.0, warmup_steps: int = 0) -> Array:
    """Cosine decay from the peak (at the end of the warm-up) towards the floor at total_steps."""
    total, peak, warmup = _common(total_steps, peak_lr, warmup_steps)
    floor = _floor(floor_lr, peak)
    lrs = _with_warmup(total, peak, warmup)
    if warmup < total:
        progress = np.arange(total - warmup) / (total - warmup)
        lrs[warmup:] = floor + 0.5 * (peak - floor) * (1.0 + np.cos(np.pi * progress))
    return lrs


def _decay_start(
    total: int, warmup: int, decay_start: int | None, decay_fraction: float | None
) -> int:
    if (decay_start is None) == (decay_fraction is None):
        raise InvalidInput("decay_start", "give exactly one of decay_start and decay_fraction")
    if decay_fraction is not None:
        fraction = non_negative("decay_fraction", decay_fraction)
        if fraction > 1:
            raise InvalidInput("decay_fraction", f"must be in [0, 1], got {fraction:g}")
        # The fraction is of the whole run (as "10-20% cool-down"), cut at the warm-up.
        start = max(warmup, total - round(fraction * total))
    else:
        assert decay_start is not None
        start = _steps("decay_start", decay_start, low=0)
    if not warmup <= start <= total:
        raise InvalidInput(
            "decay_start", f"must be in [warmup_steps, total_steps] = [{warmup}, {total}]"
        )
    return start


def wsd(
    total_steps: int,
    peak_lr: float,
    floor_lr: float = 0.0,
    warmup_steps: int = 0,
    decay_start: int | None = None,
    decay_fraction: float | None = None,
    shape: DecayShape = "linear",
) -> Array:
    """Warm-up, stable at the peak, decay from `decay_start` (or the last `decay_fraction` of
    the run) towards the floor, reached at total_steps.

    Shapes, with p = (s - D) / (T - D) the decay's progress: linear peak - (peak - floor) p;
    exponential peak^(1 - p) floor^p (needs floor > 0); cosine floor + (peak - floor)
    (1 + cos(pi p)) / 2; sqrt peak - (peak - floor) sqrt(p) (the "1 - sqrt" cool-down).
    """
    total, peak, warmup = _common(total_steps, peak_lr, warmup_steps)
    floor = _floor(floor_lr, peak)
    if shape not in DECAY_SHAPES:
        raise InvalidInput("shape", f"must be one of {', '.join(DECAY_SHAPES)}, got {shape!r}")
    if shape == "exponential" and floor <= 0:
        raise InvalidInput("floor_lr", "must be > 0 for an exponential decay")
    start = _decay_start(total, warmup, decay_start, decay_fraction)
    lrs = _with_warmup(total, peak, warmup)
    if start < total:
        p = np.arange(total - start) / (total - start)
        if shape == "linear":
            decay = peak * (1.0 - p) + floor * p
        elif shape == "exponential":
            decay = peak ** (1.0 - p) * floor**p
        elif shape == "cosine":
            decay = floor + 0.5 * (peak - floor) * (1.0 + np.cos(np.pi * p))
        else:
            decay = peak - (peak - floor) * np.sqrt(p)
        lrs[start:] = decay
    return lrs


def two_stage(
    total_steps: int, peak_lr: float, second_lr: float, switch_step: int, warmup_steps: int = 0
) -> Array:
    """The peak until `switch_step`, then `second_lr` (a step decay, or a re-warm-up if higher)."""
    total, peak, warmup = _common(total_steps, peak_lr, warmup_steps)
    second = non_negative("second_lr", second_lr)
    switch = _steps("switch_step", switch_step, low=0)
    if not warmup <= switch <= total:
        raise InvalidInput(
            "switch_step", f"must be in [warmup_steps, total_steps] = [{warmup}, {total}]"
        )
    lrs = _with_warmup(total, peak, warmup)
    lrs[switch:] = second
    return lrs


SCHEDULE_FAMILIES: dict[str, Callable[..., Array]] = {
    "constant": constant,
    "cosine": cosine,
    "wsd": wsd,
    "two_stage": two_stage,
}


def build_schedule(family: str, **parameters: Any) -> Array:
    """The schedule of a named family (SCHEDULE_FAMILIES) with these keyword parameters."""
    builder = SCHEDULE_FAMILIES.get(family)
    if builder is None:
        known = ", ".join(SCHEDULE_FAMILIES)
        raise InvalidInput("family", f"must be one of {known}, got {family!r}")
    try:
        return builder(**parameters)
    except TypeError as exc:
        # An unknown or missing keyword: say which, against the family's own signature.
        raise InvalidInput("parameters", f"do not fit schedule family {family!r}: {exc}") from exc
