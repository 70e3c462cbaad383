"""A task law as the planner stores it: form "task_link:<task>", the nine parameters of both
steps in one map, and their evaluation over a bootstrap ensemble.

Parameters: E, A, B, alpha, beta (step 1, the task-loss law, in the task loss's unit) and a, b,
k, x0 (step 2, the sigmoid link). An ensemble row holds the nine in TASK_LAW_NAMES order, both
steps refitted on the same resample of runs, so a row is a consistent chained law ("paired").

Task names are 1-30 characters of [a-z0-9_.-]: the store's form column holds 40 characters,
10 of which the "task_link:" prefix takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from scipy.special import expit

from planner.errors import InvalidInput
from planner.laws import ChinchillaLaw
from planner.tasks.chain import TaskPrediction, TaskScalingLaw
from planner.tasks.link import SigmoidLink
from planner.validation import finite, positive

TASK_FORM_PREFIX = "task_link:"
MAX_TASK_NAME = 30
_TASK_NAME = re.compile(rf"[a-z0-9_.-]{{1,{MAX_TASK_NAME}}}")
LOSS_LAW_NAMES: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
LINK_NAMES: tuple[str, ...] = ("a", "b", "k", "x0")
TASK_LAW_NAMES: tuple[str, ...] = (*LOSS_LAW_NAMES, *LINK_NAMES)


def task_name(field: str, name: str) -> str:
    """A valid task name (InvalidInput naming `field` otherwise)."""
    if not _TASK_NAME.fullmatch(name):
        raise InvalidInput(
            field, f"must be 1-{MAX_TASK_NAME} characters of [a-z0-9_.-], got {name[:80]!r}"
        )
    return name


def task_form(name: str) -> str:
    return TASK_FORM_PREFIX + name


def is_task_form(form: str) -> bool:
    """Whether `form` is a well-formed task form ("task_link:<valid name>")."""
    return form.startswith(TASK_FORM_PREFIX) and bool(
        _TASK_NAME.fullmatch(form[len(TASK_FORM_PREFIX) :])
    )


@dataclass(frozen=True)
class TaskLinkLaw:
    """The stored task law of one task: step-1 ChinchillaLaw of task loss and sigmoid link."""

    task: str
    loss_law: ChinchillaLaw
    link: SigmoidLink

    @property
    def form(self) -> str:
        return task_form(self.task)

    @classmethod
    def of(cls, form: str, values: Mapping[str, float], field: str = "parameters") -> TaskLinkLaw:
        """Validated law from its stored form and parameter map."""
        if not is_task_form(form):
            raise InvalidInput("form", f"not a task form: {form[:80]!r}")
        unknown = sorted(set(values) - set(TASK_LAW_NAMES))
        if unknown:
            raise InvalidInput(f"{field}.{unknown[0]}", f"unknown; expected {list(TASK_LAW_NAMES)}")
        missing = [name for name in TASK_LAW_NAMES if name not in values]
        if missing:
            raise InvalidInput(f"{field}.{missing[0]}", "is required")
        step1 = {name: positive(f"{field}.{name}", values[name]) for name in LOSS_LAW_NAMES}
        try:
            loss_law = ChinchillaLaw(**step1)
        except ValidationError as exc:
            where = exc.errors()[0]["loc"]
            name = str(where[0]) if where else "E"
            raise InvalidInput(f"{field}.{name}", exc.errors()[0]["msg"]) from None
        link_values = {name: finite(f"{field}.{name}", values[name]) for name in LINK_NAMES}
        try:
            link = SigmoidLink(**link_values)
        except InvalidInput as exc:  # the link names its own fields
            raise InvalidInput(f"{field}.{exc.field}", exc.reason) from None
        return cls(form[len(TASK_FORM_PREFIX) :], loss_law, link)

    @classmethod
    def from_fit(cls, task: str, law: TaskScalingLaw) -> TaskLinkLaw:
        return cls(task, law.loss_law, law.link)

    def to_mapping(self) -> dict[str, float]:
        step1 = self.loss_law
        return {
            "E": step1.E, "A": step1.A, "B": step1.B, "alpha": step1.alpha, "beta": step1.beta,
            "a": self.link.a, "b": self.link.b, "k": self.link.k, "x0": self.link.x0,
        }  # fmt: skip

    def predict(self, params: float, tokens: float) -> TaskPrediction:
        return TaskScalingLaw(self.loss_law, self.link).predict(params, tokens)


def parameter_row(law: TaskScalingLaw) -> NDArray[np.float64]:
    """The nine parameters of a fitted law as one ensemble row (TASK_LAW_NAMES order)."""
    values = TaskLinkLaw.from_fit("row", law).to_mapping()
    return np.array([values[name] for name in TASK_LAW_NAMES], dtype=np.float64)


def ensemble_task_losses(rows: NDArray[np.float64], accuracy: float) -> NDArray[np.float64]:
    """The task loss each ensemble row's own link gives `accuracy`: L = x0 - ln(a / (acc - b)
    - 1) / k; NaN for a row whose link's range (a + b, b) does not hold the accuracy."""
    a, b, k, x0 = rows[:, len(LOSS_LAW_NAMES) :].T
    with np.errstate(all="ignore"):
        inside = (accuracy > a + b) & (accuracy < b)
        loss = x0 - np.log(a / (accuracy - b) - 1.0) / k
    return np.where(inside & np.isfinite(loss) & (loss > 0), loss, np.nan)


def ensemble_accuracy(
    rows: NDArray[np.float64], params: float, tokens: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(task loss, accuracy) of every ensemble row at (N, D): each row's own step 1, then its
    own link (the rows pair the two steps)."""
    e, a_big, b_big, alpha, beta, a, b, k, x0 = rows.T
    loss = e + a_big / params**alpha + b_big / tokens**beta
    # a / (1 + exp(-k (L - x0))) + b, overflow-free: expit.
    return loss, a * expit(k * (loss - x0)) + b
