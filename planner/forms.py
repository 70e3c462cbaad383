"""Every storable law form by name, and its kind: what question a law of that form answers.

- "final_loss": loss of a finished run from N and D (planner.laws.FORMS; plans and Predict);
- "curve": loss along a learning-rate schedule, step by step (planner.curves; PredictCurve,
  PlanSchedule);
- "hyperparameters": learning rate and batch size from N and D (the Step Law; plans' training
  setup);
- "critical_batch": Kaplan et al.'s critical batch at a loss (the batch check of a plan's
  training setup). A kind of its own so that a hyperparameter selector never picks it.
- "task": a downstream task's accuracy from N and D in two steps (planner.tasks; PredictTask,
  plans with a target accuracy). Its forms are per task, "task_link:<task>", so they are not
  listed in KINDS: form_kind recognises the prefix.

A query of one kind refuses a law of another with WrongLawForm (FAILED_PRECONDITION) naming the
forms it needs, never an unknown-form error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Literal

from planner.curves.lr_annealing import AnnealingLaw
from planner.curves.multi_power import MultiPowerLaw
from planner.errors import InvalidInput, WrongLawForm
from planner.hyperparams.hardware import CriticalBatchLaw
from planner.hyperparams.step_law import StepLaw
from planner.laws import FORMS, Law, parse_law
from planner.tasks.stored import TASK_FORM_PREFIX, TaskLinkLaw, is_task_form
from planner.validation import positive

Kind = Literal["final_loss", "curve", "hyperparameters", "critical_batch", "task"]
CurveLaw = MultiPowerLaw | AnnealingLaw
AnyLaw = Law | CurveLaw | StepLaw | CriticalBatchLaw | TaskLinkLaw

CURVE_FORMS: dict[str, type[MultiPowerLaw] | type[AnnealingLaw]] = {
    MultiPowerLaw.form: MultiPowerLaw,
    AnnealingLaw.form: AnnealingLaw,
}
STEP_LAW_FORM = "step_law"
HYPERPARAMETER_FORMS: tuple[str, ...] = (STEP_LAW_FORM,)
# Step Law parameters by their stored names.
STEP_LAW_NAMES: tuple[str, ...] = tuple(f.name for f in fields(StepLaw))
CRITICAL_BATCH_FORM = "critical_batch"
CRITICAL_BATCH_NAMES: tuple[str, ...] = tuple(f.name for f in fields(CriticalBatchLaw))

KINDS: dict[str, Kind] = {
    **{form: "final_loss" for form in FORMS},
    **{form: "curve" for form in CURVE_FORMS},
    **{form: "hyperparameters" for form in HYPERPARAMETER_FORMS},
    CRITICAL_BATCH_FORM: "critical_batch",
}
ALL_FORMS: tuple[str, ...] = tuple(KINDS)
# The forms a query of each kind may use, in the order an empty form picks them (none for
# "task": its query names the task, and so the form).
FORMS_OF_KIND: dict[Kind, tuple[str, ...]] = {
    kind: tuple(form for form, of in KINDS.items() if of == kind)
    for kind in ("final_loss", "curve", "hyperparameters", "critical_batch", "task")
}


def form_kind(form: str, field: str = "form") -> Kind:
    kind = KINDS.get(form)
    if kind is None and is_task_form(form):
        return "task"
    if kind is None:
        raise InvalidInput(
            field,
            f"unknown law form {form!r}; known forms: {sorted(KINDS)} and {TASK_FORM_PREFIX}<task>",
        )
    return kind


def require_kind(form: str, kind: Kind, query: str) -> None:
    """WrongLawForm unless `form` is of `kind`: `query` names what asked (e.g. "PredictCurve")."""
    if form_kind(form) != kind:
        needed = " or ".join(repr(f) for f in FORMS_OF_KIND[kind]) or repr(
            TASK_FORM_PREFIX + "<task>"
        )
        raise WrongLawForm(f"{query} needs a law of form {needed}; the law selected is {form!r}")


def _checked_names(values: Mapping[str, float], names: tuple[str, ...], field: str) -> None:
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]}", f"unknown; expected {list(names)}")
    missing = [name for name in names if name not in values]
    if missing:
        raise InvalidInput(f"{field}.{missing[0]}", "is required")


def parse_any_law(form: str, values: Mapping[str, float], field: str = "parameters") -> AnyLaw:
    """Validated parameters of any storable form from a name -> value map."""
    kind = form_kind(form)
    if kind == "final_loss":
        return parse_law(form, values, field)
    if kind == "task":
        return TaskLinkLaw.of(form, values, field)
    if form == STEP_LAW_FORM:
        _checked_names(values, STEP_LAW_NAMES, field)
        return StepLaw(**{name: float(values[name]) for name in STEP_LAW_NAMES})
    if form == CRITICAL_BATCH_FORM:
        _checked_names(values, CRITICAL_BATCH_NAMES, field)
        return CriticalBatchLaw(
            **{name: positive(f"{field}.{name}", values[name]) for name in CRITICAL_BATCH_NAMES}
        )
    cls = CURVE_FORMS[form]
    _checked_names({"decay": 0.0, **values} if cls is AnnealingLaw else values, cls.NAMES, field)
    try:
        return cls(**{name: float(values[name]) for name in cls.NAMES if name in values})
    except InvalidInput as error:
        # The laws name "parameters.X"; the request may nest them elsewhere.
        if field != "parameters" and error.field and error.field.startswith("parameters."):
            raise InvalidInput(field + error.field[len("parameters") :], error.reason) from error
        raise


def law_mapping(law: AnyLaw) -> dict[str, float]:
    """A law's parameters by stored name (the inverse of parse_any_law)."""
    if isinstance(law, StepLaw):
        return {name: float(getattr(law, name)) for name in STEP_LAW_NAMES}
    if isinstance(law, CriticalBatchLaw):
        return {name: float(getattr(law, name)) for name in CRITICAL_BATCH_NAMES}
    return dict(law.to_mapping())


def law_form(law: AnyLaw) -> str:
    if isinstance(law, StepLaw):
        return STEP_LAW_FORM
    if isinstance(law, CriticalBatchLaw):
        return CRITICAL_BATCH_FORM
    return str(law.form)
