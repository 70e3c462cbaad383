"""Loss curves under learning-rate schedules: per-step schedules, the Multi-Power Law (Luo et al.
2025), the LR-annealing law (Tissue et al. 2024) and their fits to observed training curves."""

from planner.curves.fit import (
    AnnealingFit,
    Curve,
    CurveErrors,
    ErrorSummary,
    MultiPowerFit,
    fit_lr_annealing,
    fit_multi_power,
    prediction_errors,
)
from planner.curves.lr_annealing import AnnealingLaw, annealing_area, forward_area
from planner.curves.multi_power import MultiPowerLaw, prepare
from planner.curves.schedules import (
    MAX_STEPS,
    SCHEDULE_FAMILIES,
    build_schedule,
    constant,
    cosine,
    two_stage,
    validate_lrs,
    wsd,
)

__all__ = [
    "MAX_STEPS",
    "SCHEDULE_FAMILIES",
    "AnnealingFit",
    "AnnealingLaw",
    "Curve",
    "CurveErrors",
    "ErrorSummary",
    "MultiPowerFit",
    "MultiPowerLaw",
    "annealing_area",
    "build_schedule",
    "constant",
    "cosine",
    "fit_lr_annealing",
    "fit_multi_power",
    "forward_area",
    "prediction_errors",
    "prepare",
    "two_stage",
    "validate_lrs",
    "wsd",
]
