"""A `Schedule` message as the per-step learning rates the loss-curve laws take, validated
with the field names of the request (INVALID_ARGUMENT naming e.g. `schedules[1].named.peak_lr`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from planner.curves.schedules import build_schedule, validate_lrs
from planner.errors import InvalidInput
from planner_api.v1 import planner_pb2 as pb

Array = NDArray[np.float64]

# NamedSchedule fields each family takes (others must be left unset or zero).
_FAMILY_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("total_steps", "peak_lr", "warmup_steps"),
    "cosine": ("total_steps", "peak_lr", "floor_lr", "warmup_steps"),
    "wsd": (
        "total_steps",
        "peak_lr",
        "floor_lr",
        "warmup_steps",
        "decay_start",
        "decay_fraction",
        "decay_shape",
    ),
    "two_stage": ("total_steps", "peak_lr", "warmup_steps", "second_lr", "switch_step"),
}


def schedule_lrs(field: str, schedule: pb.Schedule) -> Array:
    """The learning rate at every step of `schedule` (the message at `field` of the request)."""
    kind = schedule.WhichOneof("kind")
    if kind is None:
        raise InvalidInput(field, "give the rates (lrs) or a named schedule (named)")
    if kind == "lrs":
        return validate_lrs(list(schedule.lrs.values), f"{field}.lrs.values")
    return named_lrs(f"{field}.named", schedule.named)


def named_lrs(field: str, named: pb.NamedSchedule) -> Array:
    family = named.family
    allowed = _FAMILY_FIELDS.get(family)
    if allowed is None:
        raise InvalidInput(f"{field}.family", f"must be one of {', '.join(_FAMILY_FIELDS)}")
    given = {f.name for f, _ in named.ListFields()} - {"family"}
    stray = sorted(given - set(allowed))
    if stray:
        raise InvalidInput(f"{field}.{stray[0]}", f"is not a parameter of a {family} schedule")
    arguments: dict[str, Any] = {}
    for name in allowed:
        if name == "decay_start":
            if named.HasField("decay_start"):
                arguments[name] = named.decay_start
        elif name == "decay_fraction":
            if named.HasField("decay_fraction"):
                arguments[name] = named.decay_fraction
        elif name == "decay_shape":
            arguments["shape"] = named.decay_shape or "linear"
        else:
            arguments[name] = getattr(named, name)
    try:
        return build_schedule(family, **arguments)
    except InvalidInput as error:
        # The builders name their own arguments; the request nests them under `field`.
        name = "decay_shape" if error.field == "shape" else str(error.field)
        raise InvalidInput(f"{field}.{name}", error.reason) from error


def schedule_name(schedule: pb.Schedule, index: int) -> str:
    """The name shown for a schedule: its own, else its family (or "schedule i")."""
    if schedule.name:
        return schedule.name
    if schedule.WhichOneof("kind") == "named":
        return schedule.named.family
    return f"schedule {index}"
