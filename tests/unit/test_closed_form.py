"""Closed-form optimum and dual against LAWS.md §11.2 / §11.3 (computed there with numpy)."""

from __future__ import annotations

import math

import pytest

from planner.errors import Infeasible
from planner.laws import ChinchillaLaw
from planner.planning import closed_form
from tests.conftest import EPOCH, HOFFMANN_ROUNDED, HOFFMANN_TEX

# (law, G, a, C, N_opt, D_opt, D/N, L_opt): every row of the LAWS.md §11.2 table.
TABLE_11_2 = [
    (HOFFMANN_ROUNDED, 1.344710, 0.451613, 1e21, 1.82422e9, 9.13634e10, 50.08, 2.328883),
    (HOFFMANN_ROUNDED, 1.344710, 0.451613, 1e23, 1.45983e10, 1.14168e12, 78.21, 2.005010),
    (HOFFMANN_ROUNDED, 1.344710, 0.451613, 5.76e23, 3.21899e10, 2.98231e12, 92.65, 1.930748),
    (HOFFMANN_ROUNDED, 1.344710, 0.451613, 1e25, 1.16823e11, 1.42666e13, 122.1, 1.845320),
    (HOFFMANN_TEX, 1.300050, 0.456526, 1e21, 2.21695e9, 7.51782e10, 33.91, 2.295491),
    (HOFFMANN_TEX, 1.300050, 0.456526, 1e23, 1.81472e10, 9.18417e11, 50.61, 1.988495),
    (HOFFMANN_TEX, 1.300050, 0.456526, 5.76e23, 4.03609e10, 2.37854e12, 58.93, 1.918412),
    (HOFFMANN_TEX, 1.300050, 0.456526, 1e25, 1.48546e11, 1.12199e13, 75.53, 1.838024),
    (EPOCH, 0.119630, 0.512612, 1e21, 2.77846e9, 5.99853e10, 21.59, 2.305529),
    (EPOCH, 0.119630, 0.512612, 1e23, 2.94461e10, 5.66005e11, 19.22, 2.032052),
    (EPOCH, 0.119630, 0.512612, 5.76e23, 7.22487e10, 1.32874e12, 18.39, 1.974441),
    (EPOCH, 0.119630, 0.512612, 1e25, 3.12070e11, 5.34068e12, 17.11, 1.911729),
]


@pytest.mark.parametrize(("law", "g", "a", "compute", "n", "d", "ratio", "loss"), TABLE_11_2)
def test_closed_form_matches_published_table(
    law: ChinchillaLaw,
    g: float,
    a: float,
    compute: float,
    n: float,
    d: float,
    ratio: float,
    loss: float,
) -> None:
    constants = closed_form.frontier_constants(law)
    assert constants.g == pytest.approx(g, rel=5e-6)
    assert constants.a == pytest.approx(a, rel=5e-6)
    params, tokens = closed_form.optimal_allocation(law, compute)
    # The table prints 6 significant figures.
    assert params == pytest.approx(n, rel=5e-6)
    assert tokens == pytest.approx(d, rel=5e-6)
    assert tokens / params == pytest.approx(ratio, rel=5e-4)
    # Six decimals, one unit in the last place (the table truncates some entries).
    assert law.loss(params, tokens) == pytest.approx(loss, abs=1e-6)
    # Invariants of LAWS.md §11.2: the budget is spent exactly; D/N = G^-2 (C/6)^(b - a).
    assert 6 * params * tokens == pytest.approx(compute, rel=1e-12)
    expected_ratio = constants.g**-2 * (compute / 6) ** (constants.b - constants.a)
    assert tokens / params == pytest.approx(expected_ratio, rel=1e-9)


def test_closed_form_is_the_minimum_on_the_budget_line() -> None:
    """Independent check: a dense scan of N along 6ND = C finds no lower loss."""
    compute = 1e23
    params, tokens = closed_form.optimal_allocation(EPOCH, compute)
    best = EPOCH.loss(params, tokens)
    for factor in (0.9, 0.99, 0.999, 1.001, 1.01, 1.1):
        n = params * factor
        assert EPOCH.loss(n, compute / (6 * n)) > best


def test_epoch_frontier_tokens_for_70b() -> None:
    """LAWS.md §11.2: Epoch D_opt(N = 70e9) on the frontier = 1.28939e12."""
    f = closed_form.frontier_constants(EPOCH)
    tokens = f.g ** -(1 + f.b / f.a) * 70e9 ** (f.b / f.a)
    assert tokens == pytest.approx(1.28939e12, rel=5e-6)
    # and the closed form at the compute that makes 70e9 optimal agrees with it
    compute = 6 * (70e9 / f.g) ** (1 / f.a)
    assert closed_form.optimal_allocation(EPOCH, compute)[1] == pytest.approx(tokens, rel=1e-9)


def test_hoffmann_tex_compute_for_67b() -> None:
    """LAWS.md §11.2: with TeX parameters 67B needs 1.75e24 FLOPs and 4.349e12 tokens."""
    f = closed_form.frontier_constants(HOFFMANN_TEX)
    compute = 6 * (67e9 / f.g) ** (1 / f.a)
    assert compute == pytest.approx(1.75e24, rel=5e-3)
    assert closed_form.optimal_allocation(HOFFMANN_TEX, compute)[1] == pytest.approx(
        4.349e12, rel=5e-4
    )


@pytest.mark.parametrize(
    ("law", "target", "compute"),
    [
        (EPOCH, 2.0, 2.4748e23),
        (EPOCH, 2.2, 3.9182e21),
        (HOFFMANN_ROUNDED, 2.0, 1.1101e23),
        (HOFFMANN_ROUNDED, 2.2, 4.3378e21),
    ],
)
def test_least_compute_for_loss(law: ChinchillaLaw, target: float, compute: float) -> None:
    """LAWS.md §11.3 dual values (5 significant figures)."""
    assert closed_form.least_compute_for_loss(law, target) == pytest.approx(compute, rel=5e-5)


@pytest.mark.parametrize("law", [HOFFMANN_ROUNDED, HOFFMANN_TEX, EPOCH])
def test_dual_round_trip(law: ChinchillaLaw) -> None:
    """LAWS.md §11.3: C_min(L_opt(1e23)) = 1e23 for all three sets."""
    params, tokens = closed_form.optimal_allocation(law, 1e23)
    assert closed_form.least_compute_for_loss(law, law.loss(params, tokens)) == pytest.approx(
        1e23, rel=1e-9
    )


def test_optimal_loss_coefficient_matches_direct_loss() -> None:
    compute = 3e22
    params, tokens = closed_form.optimal_allocation(EPOCH, compute)
    exponent = -EPOCH.alpha * EPOCH.beta / (EPOCH.alpha + EPOCH.beta)
    predicted = EPOCH.E + closed_form.optimal_loss_coefficient(EPOCH) * (compute / 6) ** exponent
    assert predicted == pytest.approx(EPOCH.loss(params, tokens), rel=1e-12)


@pytest.mark.parametrize("target", [EPOCH.E, EPOCH.E - 0.1, 1.0])
def test_target_at_or_below_irreducible_loss_is_infeasible(target: float) -> None:
    with pytest.raises(Infeasible, match="irreducible loss") as caught:
        closed_form.least_compute_for_loss(EPOCH, target)
    assert caught.value.field == "target_loss"


def test_target_just_above_e_does_not_overflow() -> None:
    """Small exponents make C_min astronomically large near E: refused, not an overflow."""
    flat = ChinchillaLaw(E=2.0, A=400.0, B=400.0, alpha=0.05, beta=0.05)
    with pytest.raises(Infeasible, match="1e300"):
        closed_form.least_compute_for_loss(flat, 2.0 + 1e-12)


def test_other_flops_per_param_token() -> None:
    """With C = k N D the optimum is the 6ND one at the equivalent budget 6 C / k."""
    n8, d8 = closed_form.optimal_allocation(EPOCH, 1e23, flops_per_param_token=8.0)
    n6, d6 = closed_form.optimal_allocation(EPOCH, 1e23 * 6 / 8)
    assert (n8, d8) == pytest.approx((n6, d6), rel=1e-12)
    assert 8 * n8 * d8 == pytest.approx(1e23, rel=1e-12)
    assert math.isfinite(n8)
