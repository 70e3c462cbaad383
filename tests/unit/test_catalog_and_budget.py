"""The shipped catalogue carries the published values; budgets convert to FLOPs."""

from __future__ import annotations

import math

import pytest

from planner.budget import flops_from_accelerator_hours
from planner.catalog import CATALOG
from planner.errors import InvalidInput
from planner.forms import law_form, law_mapping, parse_any_law
from planner.hyperparams import CriticalBatchLaw, StepLaw
from planner.laws import ChinchillaLaw, OvertrainingLaw
from planner.planning import closed_form

BY_NAME = {family.name: family for family in CATALOG}


def test_catalogue_has_the_design_families() -> None:
    for name in (
        "chinchilla-hoffmann-2022",
        "chinchilla-epoch-2024",
        "inference-sardana-2023",
        "data-constrained-muennighoff-2023",
        "overtraining-gadre-2024-c4",
        "overtraining-gadre-2024-redpajama",
        "overtraining-gadre-2024-refinedweb",
    ):
        family = BY_NAME[name]
        assert family.param_convention == "total"
        assert all(law.citation for law in family.laws)
        assert all(law.law() for law in family.laws)


def test_hoffmann_full_precision_reproduces_the_gopher_budget_optimum() -> None:
    """LAWS.md §1.4: TeX-precision values put the 5.76e23 optimum at ~40.4B (rounded: 32.2B)."""
    law = BY_NAME["chinchilla-hoffmann-2022"].laws[0].law()
    assert isinstance(law, ChinchillaLaw)
    assert pytest.approx(1.693374, rel=1e-6) == law.E
    params, _ = closed_form.optimal_allocation(law, 5.76e23)
    assert params == pytest.approx(4.03609e10, rel=5e-6)
    assert closed_form.frontier_constants(law).a == pytest.approx(0.456526, rel=5e-6)


def test_epoch_and_sardana_sets() -> None:
    epoch = BY_NAME["chinchilla-epoch-2024"].laws[0].law()
    assert epoch.to_mapping() == {
        "E": 1.8172,
        "A": 482.01,
        "B": 2085.43,
        "alpha": 0.3478,
        "beta": 0.3658,
    }
    sardana = BY_NAME["inference-sardana-2023"].laws[0].law()
    assert isinstance(sardana, ChinchillaLaw)
    # LAWS.md §11.5: G = 1.297347, a = 0.457189 for this set.
    constants = closed_form.frontier_constants(sardana)
    assert constants.g == pytest.approx(1.297347, rel=5e-7)
    assert constants.a == pytest.approx(0.457189, rel=5e-6)


def test_muennighoff_constants() -> None:
    law = BY_NAME["data-constrained-muennighoff-2023"].laws[0].law().to_mapping()
    assert law["A"] == pytest.approx(520.83, rel=1e-5)
    assert law["B"] == pytest.approx(1487.72, rel=1e-5)
    assert law["E"] == pytest.approx(1.869144, rel=1e-6)
    g = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (2 * law["alpha"]))
    assert g == pytest.approx(0.225802, rel=5e-6)


def test_gadre_fits_are_over_training_laws() -> None:
    c4 = BY_NAME["overtraining-gadre-2024-c4"].laws[0].law()
    assert isinstance(c4, OvertrainingLaw)
    assert (c4.E, c4.a, c4.b, c4.eta) == (1.5083, 141.2772, 189.5155, 0.12124)
    assert c4.epsilon == 0.7589


def test_step_law_family_is_the_published_fit() -> None:
    """Li et al. 2025 (arXiv:2503.04715), the authors' mean bootstrap fit (shared data README):
    lr = 1.797 N^-0.7129 D^0.3075, batch = 0.5807 D^0.5709 tokens, N non-embedding."""
    family = BY_NAME["step-law-2025"]
    assert family.param_convention == "non_embedding"
    (published,) = family.laws
    assert published.form == "step_law" and "2503.04715" in published.citation
    law = published.law()
    assert isinstance(law, StepLaw)
    assert law_mapping(law) == {
        "lr_coefficient": 1.797,
        "lr_params_exponent": -0.7129,
        "lr_tokens_exponent": 0.3075,
        "batch_coefficient": 0.5807,
        "batch_tokens_exponent": 0.5709,
    }
    # The authors' example: N = 7e9, D = 1.4e12 -> lr 9.35e-4, batch 5.0e6 tokens.
    assert law.learning_rate(7e9, 1.4e12) == pytest.approx(9.35e-4, abs=5e-7)
    assert law.batch_tokens(1.4e12) == pytest.approx(5.0e6, rel=2e-3)


def test_critical_batch_family_holds_kaplans_table_5_constants() -> None:
    family = BY_NAME["critical-batch-kaplan-2020"]
    assert family.param_convention == "non_embedding"
    (published,) = family.laws
    assert published.form == "critical_batch" and "2001.08361" in published.citation
    law = published.law()
    assert isinstance(law, CriticalBatchLaw)
    # Table 5: B_crit(L) = B_* / L^(1/alpha_B), B_* = 2.1e8 tokens, alpha_B = 0.21.
    assert law_mapping(law) == {"B_star": 2.1e8, "alpha_B": 0.21}
    assert law_form(law) == "critical_batch"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"B_star": 0.0, "alpha_B": 0.21}, "parameters.B_star"),
        ({"B_star": 2.1e8, "alpha_B": float("nan")}, "parameters.alpha_B"),
        ({"B_star": 2.1e8}, "parameters.alpha_B"),
        ({"B_star": 2.1e8, "alpha_B": 0.21, "beta": 1.0}, "parameters.beta"),
    ],
)
def test_bad_critical_batch_parameters_name_the_field(values: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_any_law("critical_batch", values)
    assert caught.value.field == field


def test_accelerator_hours_to_flops() -> None:
    # 1000 GPUs for a day at 989 TFLOP/s peak and 40% MFU.
    flops = flops_from_accelerator_hours(24_000, 9.89e14, 0.4)
    assert flops == pytest.approx(24_000 * 3600 * 9.89e14 * 0.4, rel=1e-15)
    assert math.log10(flops) == pytest.approx(22.53, abs=0.01)


@pytest.mark.parametrize(
    ("hours", "peak", "mfu", "field"),
    [
        (0.0, 1e15, 0.4, "accelerator_hours"),
        (10.0, float("nan"), 0.4, "peak_flops_per_second"),
        (10.0, 1e15, 1.5, "mfu"),
        (10.0, 1e15, 0.0, "mfu"),
    ],
)
def test_bad_accelerator_budget(hours: float, peak: float, mfu: float, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        flops_from_accelerator_hours(hours, peak, mfu)
    assert caught.value.field is not None and caught.value.field.endswith(field)
