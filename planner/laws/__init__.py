"""Law forms by name. Each form is a frozen pydantic model with predict() and as_chinchilla();
the broken-power-law forms (bnsl_*) and compute_power predict but refuse as_chinchilla() (no N/D
split)."""

from __future__ import annotations

from collections.abc import Mapping

from planner.errors import InvalidInput
from planner.laws.base import LawParams
from planner.laws.bnsl_forms import BnslComputeLaw, BnslLaw, BnslParamsLaw, BnslTokensLaw
from planner.laws.chinchilla import ChinchillaLaw
from planner.laws.compute_power import ComputePowerLaw
from planner.laws.data_constrained import DataConstrainedLaw
from planner.laws.overtraining import OvertrainingLaw
from planner.laws.sparse import SparseAvgParamsLaw

Law = ChinchillaLaw | DataConstrainedLaw | OvertrainingLaw | BnslLaw | ComputePowerLaw
# Forms that are curves of one variable: they predict, but have no N/D split to plan with.
CurveOfOneVariable = BnslLaw | ComputePowerLaw

FORMS: dict[
    str,
    type[ChinchillaLaw]
    | type[DataConstrainedLaw]
    | type[OvertrainingLaw]
    | type[BnslLaw]
    | type[ComputePowerLaw],
] = {
    cls.form: cls
    for cls in (
        ChinchillaLaw,
        OvertrainingLaw,
        DataConstrainedLaw,
        SparseAvgParamsLaw,
        # After the Chinchilla family, so a family's default law stays the one it had.
        BnslComputeLaw,
        BnslParamsLaw,
        BnslTokensLaw,
        ComputePowerLaw,
    )
}
# When a request names no form, the first one a family has in this order answers.
DEFAULT_FORM_ORDER: tuple[str, ...] = tuple(FORMS)


def parse_law(form: str, values: Mapping[str, float], field: str = "parameters") -> Law:
    """Validated law parameters of `form` from a name -> value map."""
    cls = FORMS.get(form)
    if cls is None:
        raise InvalidInput("form", f"unknown law form {form!r}; known forms: {sorted(FORMS)}")
    law = cls.from_mapping(values, field)
    if isinstance(law, CurveOfOneVariable):
        return law  # no Chinchilla form to check; its own validators ran
    try:
        law.as_chinchilla()
    except ValueError as exc:  # pydantic's ValidationError included
        raise InvalidInput(
            field, f"these {form} parameters have no usable Chinchilla form: {exc}"
        ) from exc
    return law


def predict_loss(law: Law, params: float, tokens: float, unique_tokens: float | None) -> float:
    """Scalar loss of one model; unique tokens matter only to forms that model repetition."""
    if isinstance(law, DataConstrainedLaw):
        return float(law.predict(params, tokens, unique_tokens))
    return float(law.predict(params, tokens))


__all__ = [
    "DEFAULT_FORM_ORDER",
    "FORMS",
    "BnslComputeLaw",
    "BnslLaw",
    "BnslParamsLaw",
    "BnslTokensLaw",
    "ChinchillaLaw",
    "ComputePowerLaw",
    "CurveOfOneVariable",
    "DataConstrainedLaw",
    "Law",
    "LawParams",
    "OvertrainingLaw",
    "SparseAvgParamsLaw",
    "parse_law",
    "predict_loss",
]
