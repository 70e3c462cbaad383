"""Hyper-parameters, time and cost of a training plan (issue 12, items 3 and 4).

step_law: Li et al. 2025's learning-rate and batch-size law and its published fit.
step_fit: refitting that law from a grid of training runs, with a cell bootstrap.
hardware: an accelerator profile, the wall-clock time and cost of a plan, and Kaplan et al.'s
critical-batch check.
"""

from planner.hyperparams.hardware import (
    KAPLAN_ALPHA_B,
    KAPLAN_B_STAR,
    KAPLAN_CRITICAL_BATCH,
    CriticalBatchCheck,
    CriticalBatchLaw,
    HardwareProfile,
    TrainingPlan,
    critical_batch,
    critical_batch_check,
    plan_training,
)
from planner.hyperparams.step_fit import (
    CellOptima,
    StepLawBootstrap,
    bootstrap_step_law,
    cell_optima,
    fit_step_law,
)
from planner.hyperparams.step_law import PUBLISHED_STEP_LAW, StepLaw

__all__ = [
    "KAPLAN_ALPHA_B",
    "KAPLAN_B_STAR",
    "KAPLAN_CRITICAL_BATCH",
    "PUBLISHED_STEP_LAW",
    "CellOptima",
    "CriticalBatchCheck",
    "CriticalBatchLaw",
    "HardwareProfile",
    "StepLaw",
    "StepLawBootstrap",
    "TrainingPlan",
    "bootstrap_step_law",
    "cell_optima",
    "critical_batch",
    "critical_batch_check",
    "fit_step_law",
    "plan_training",
]
