"""Recipe comparison on a compute axis against published figures (issue 13's checks), each
reference computed here in closed form, apart from the module's own root finding."""

from __future__ import annotations

import math

import pytest

from planner.catalog import CATALOG
from planner.comparison import (
    BnslOfCompute,
    ChinchillaAlong,
    OffsetPowerLaw,
    OnAcceleratorHours,
    SaturatingPowerLaw,
    compute_multiplier,
    crossovers,
    power_of_compute,
    winners,
)
from planner.errors import Infeasible, InvalidInput
from planner.laws import ChinchillaLaw, ComputePowerLaw, OvertrainingLaw
from planner.laws.bnsl import Break, BrokenPowerLaw
from planner.planning.compute_optimal import plan_for_budget, plan_for_target_loss

BY_NAME = {family.name: family for family in CATALOG}

# Cherti et al. 2023 (LAION), ImageNet zero-shot error vs GFLOPs, form a (x + b)^c + d.
CLIP = OffsetPowerLaw(57.862083, 18.391321, -0.226604, 0.111169)
MAMMUT = OffsetPowerLaw(125.356572, 19.289384, -0.255670, 0.101112)


def _gadre(dataset: str) -> OvertrainingLaw:
    law = BY_NAME[f"overtraining-gadre-2024-{dataset}"].laws[0].law()
    assert isinstance(law, OvertrainingLaw)
    return law


def _gadre_compute_for(law: OvertrainingLaw, loss: float, multiplier: float) -> float:
    """Gadre et al. eq. (4) inverted: L = E + (a M^eta + b M^-eta) C^-eta."""
    scale = law.a * multiplier**law.eta + law.b * multiplier**-law.eta
    return float((scale / (loss - law.E)) ** (1.0 / law.eta))


@pytest.mark.parametrize(
    ("budget", "published"), [(1e20, 1.120), (1e22, 1.493), (1e24, 3.694)]
)  # fmt: skip
def test_redpajama_needs_more_compute_than_refinedweb(budget: float, published: float) -> None:
    """Gadre et al. 2024 fits at M = 20 (C4 validation loss): the multiplier of issue 13."""
    refinedweb, redpajama = _gadre("refinedweb"), _gadre("redpajama")
    first = ChinchillaAlong(refinedweb.as_chinchilla(), multiplier=20.0)
    second = ChinchillaAlong(redpajama.as_chinchilla(), multiplier=20.0)
    [multiplier] = compute_multiplier(first, second, [budget])
    assert multiplier == pytest.approx(published, abs=0.0005)
    by_hand = _gadre_compute_for(redpajama, float(first.loss(budget)), 20.0) / budget
    assert multiplier == pytest.approx(by_hand, rel=1e-9)


def test_the_gadre_datasets_do_not_cross_between_1e15_and_1e30() -> None:
    first = ChinchillaAlong(_gadre("refinedweb").as_chinchilla(), multiplier=20.0)
    second = ChinchillaAlong(_gadre("redpajama").as_chinchilla(), multiplier=20.0)
    assert crossovers(first, second, 1e15, 1e30) == []
    [stretch] = winners(first, second, 1e15, 1e30)
    assert stretch.winner == "first"


def test_clip_and_mammut_cross_where_laion_says() -> None:
    [crossing] = crossovers(CLIP, MAMMUT, 1e6, 1e16)
    assert crossing == pytest.approx(6.76e10, rel=0.001)
    # Independent: bisection on the closed forms.
    low, high = math.log(1e8), math.log(1e14)
    for _ in range(200):
        middle = (low + high) / 2
        if float(CLIP.loss(math.exp(middle)) - MAMMUT.loss(math.exp(middle))) < 0:
            low = middle
        else:
            high = middle
    assert crossing == pytest.approx(math.exp(low), rel=1e-9)
    below, above = winners(CLIP, MAMMUT, 1e6, 1e16)
    assert (below.winner, above.winner) == ("first", "second")
    assert below.high == above.low == crossing


def test_clip_needs_176_times_mammut_compute_at_1e12_gflops() -> None:
    [multiplier] = compute_multiplier(MAMMUT, CLIP, [1e12])
    assert multiplier == pytest.approx(1.76, abs=0.005)
    loss = 125.356572 * (1e12 + 19.289384) ** -0.255670 + 0.101112
    clip_compute = ((loss - 0.111169) / 57.862083) ** (1 / -0.226604) - 18.391321
    assert multiplier == pytest.approx(clip_compute / 1e12, rel=1e-9)


def test_compute_optimal_path_matches_the_planner() -> None:
    law = BY_NAME["chinchilla-hoffmann-2022"].laws[0].law()
    assert isinstance(law, ChinchillaLaw)
    path = ChinchillaAlong(law)
    for budget in (1e20, 1e23, 1e26):
        plan = plan_for_budget(law, budget)
        assert float(path.loss(budget)) == pytest.approx(plan.loss, rel=1e-9)
        target = plan_for_target_loss(law, plan.loss)
        assert path.compute_for(plan.loss) == pytest.approx(target.flops, rel=1e-7)


def test_a_loss_below_a_floor_is_never_reached() -> None:
    saturating = SaturatingPowerLaw(2.0, 100.0, 0.1)
    better = SaturatingPowerLaw(1.5, 100.0, 0.1)
    # At huge compute the better recipe reaches losses under 2.0: the first never does.
    [multiplier] = compute_multiplier(better, saturating, [1e60])
    assert multiplier == math.inf
    assert saturating.compute_for(2.0) == math.inf


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="compute_high"):
        crossovers(CLIP, MAMMUT, 1e12, 1e10)
    with pytest.raises(InvalidInput, match=r"budgets\[1\]"):
        compute_multiplier(CLIP, MAMMUT, [1e10, -1.0])
    with pytest.raises(InvalidInput, match=r"^c:"):
        OffsetPowerLaw(1.0, 0.0, 0.2, 0.0)
    with pytest.raises(InvalidInput, match="multiplier"):
        ChinchillaAlong(BY_NAME["chinchilla-hoffmann-2022"].laws[0].law(), multiplier=math.nan)  # type: ignore[arg-type]


def test_a_compute_power_law_is_laions_curve() -> None:
    """L_inf = d, A = a, alpha = -c, C0 = b: the stored form gives LAION's crossover."""
    clip = power_of_compute(ComputePowerLaw(L_inf=0.111169, A=57.862083, alpha=0.226604,
                                            C0=18.391321))  # fmt: skip
    mammut = power_of_compute(ComputePowerLaw(L_inf=0.101112, A=125.356572, alpha=0.255670,
                                              C0=19.289384))  # fmt: skip
    for gflops in (1e9, 6.76e10, 1e13):
        assert float(clip.loss(gflops)) == pytest.approx(float(CLIP.loss(gflops)), rel=1e-15)
    [crossing] = crossovers(clip, mammut, 1e6, 1e16)
    assert crossing == pytest.approx(6.76e10, rel=0.001)


def test_on_accelerator_hours_a_recipe_twice_as_fast_needs_half_the_hours() -> None:
    law = SaturatingPowerLaw(1.7, 3000.0, 0.17)
    fast, slow = OnAcceleratorHours(law, 4e14), OnAcceleratorHours(law, 2e14)
    assert compute_multiplier(fast, slow, [1e3, 1e6]) == pytest.approx([2.0, 2.0], rel=1e-12)


def test_accelerator_hours_multiplier_against_a_hand_computation() -> None:
    first, second = SaturatingPowerLaw(1.7, 3000.0, 0.17), SaturatingPowerLaw(1.6, 2500.0, 0.15)
    hours = 1e5
    [multiplier] = compute_multiplier(
        OnAcceleratorHours(first, 3.0e14), OnAcceleratorHours(second, 4.5e14), [hours]
    )
    loss = 1.7 + 3000.0 * (hours * 3600 * 3.0e14) ** -0.17
    second_hours = (2500.0 / (loss - 1.6)) ** (1 / 0.15) / (3600 * 4.5e14)
    assert multiplier == pytest.approx(second_hours / hours, rel=1e-9)


def test_a_falling_bnsl_of_compute_inverts_like_its_closed_form() -> None:
    """No breaks: y = a + b x^-c0, so x = (b / (y - a))^(1 / c0)."""
    curve = BnslOfCompute(BrokenPowerLaw(1.7, 3000.0, 0.17), 1e15, 1e30)
    for loss in (2.5, 1.9, 5.0):  # 5.0 is reached below the checked range
        assert curve.compute_for(loss) == pytest.approx(
            (3000.0 / (loss - 1.7)) ** (1 / 0.17), rel=1e-9
        )
    assert curve.floor == 1.7 and curve.compute_for(1.7) == math.inf


def test_a_bnsl_that_rises_with_compute_is_refused() -> None:
    """A break of slope change -0.3 turns the 0.2 decline into a rise past 1e22."""
    rising = BrokenPowerLaw(1.0, 1e4, 0.2, (Break(-0.3, 1e22, 0.5),))
    with pytest.raises(Infeasible, match="rises with compute"):
        BnslOfCompute(rising, 1e15, 1e30)
    BnslOfCompute(rising, 1e15, 1e21)  # falling up to well before the break: usable
