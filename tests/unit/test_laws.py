"""Law forms: validation at the edge, the Gadre<->Chinchilla identity, Muennighoff values."""

from __future__ import annotations

import math

import pytest

from planner.errors import InvalidInput
from planner.laws import (
    ChinchillaLaw,
    DataConstrainedLaw,
    OvertrainingLaw,
    parse_law,
    predict_loss,
)

GOOD = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

MUENNIGHOFF = DataConstrainedLaw(
    E=math.exp(0.6254804),
    A=math.exp(6.255414),
    B=math.exp(7.3049974),
    alpha=0.3526596,
    beta=0.3526596,
    r_d_star=15.387756,
    r_n_star=5.309743,
)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"A": float("nan")}, "parameters.A", "finite"),
        ({"B": float("inf")}, "parameters.B", "finite"),
        ({"alpha": 0.0}, "parameters.alpha", "> 0"),
        ({"beta": -0.3}, "parameters.beta", "> 0"),
        ({"E": -1.0}, "parameters.E", ">= 0"),
        ({"gamma": 1.0}, "parameters.gamma", "unknown parameter"),
    ],
)
def test_bad_parameters_name_the_field(change: dict[str, float], field: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        parse_law("chinchilla", {**GOOD, **change})
    assert caught.value.field == field


def test_missing_parameter_and_unknown_form() -> None:
    values = dict(GOOD)
    del values["beta"]
    with pytest.raises(InvalidInput, match="required") as caught:
        parse_law("chinchilla", values)
    assert caught.value.field == "parameters.beta"
    with pytest.raises(InvalidInput, match="unknown law form") as caught:
        parse_law("kaplan-2020", GOOD)
    assert caught.value.field == "form"


def test_laws_are_frozen() -> None:
    law = ChinchillaLaw(**GOOD)
    with pytest.raises(ValueError, match="frozen"):
        law.E = 2.0  # type: ignore[misc]


def test_chinchilla_predict_by_hand() -> None:
    law = ChinchillaLaw(**GOOD)
    expected = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert law.loss(70e9, 1.4e12) == pytest.approx(expected, rel=1e-15)


def test_gadre_redpajama_chinchilla_equivalent() -> None:
    """LAWS.md §11.6: A = 166.2110, B = 287.1681, alpha = beta = 0.27285."""
    law = OvertrainingLaw(E=1.8366, a=212.2361, b=366.6872, eta=0.13643)
    equivalent = law.as_chinchilla()
    # eta is printed to 5 decimals; its rounding (<= 5e-6) moves A and B by up to ~1.5e-5 rel.
    assert pytest.approx(166.2110, rel=2e-5) == equivalent.A
    assert pytest.approx(287.1681, rel=2e-5) == equivalent.B
    assert equivalent.alpha == pytest.approx(0.27286, abs=1e-5)
    # The L(C, M) form and the Chinchilla form are the same function of (N, D).
    for n, d in [(1.4e9, 2.8e10), (6.9e9, 1.38e11), (4.1e8, 2.6e11)]:
        assert float(law.predict(n, d)) == pytest.approx(equivalent.loss(n, d), rel=1e-12)


def test_gadre_downstream_error_link() -> None:
    law = OvertrainingLaw(E=1.5, a=1.0, b=1.0, eta=0.1, epsilon=0.7589, k=1.2885, gamma=0.9722)
    assert law.downstream_error(3.0) == pytest.approx(0.7589 - 1.2885 * math.exp(-0.9722 * 3.0))
    with pytest.raises(InvalidInput):
        OvertrainingLaw(E=1.5, a=1.0, b=1.0, eta=0.1).downstream_error(3.0)


@pytest.mark.parametrize(
    ("n", "d", "u", "loss"),
    [(6.34e9, 242e9, 25e9, 2.2256440889984477), (8.67e9, 178e9, 25e9, 2.2269634075087867)],
)
def test_muennighoff_repo_values(n: float, d: float, u: float, loss: float) -> None:
    """LAWS.md §11.7, printed by the authors' repository."""
    assert predict_loss(MUENNIGHOFF, n, d, u) == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize(
    ("epochs", "effective"),
    [(1, 1e9), (2, 1.96820e9), (4, 3.72567e9), (16, 1.05825e10), (40, 1.51675e10)],
)
def test_muennighoff_effective_data(epochs: int, effective: float) -> None:
    assert float(MUENNIGHOFF.effective_tokens(epochs * 1e9, 1e9)) == pytest.approx(
        effective, rel=5e-6
    )


def test_muennighoff_effective_data_asymptote_and_unlimited_data() -> None:
    assert float(MUENNIGHOFF.effective_tokens(1e15, 1e9)) == pytest.approx(1.638776e10, rel=1e-6)
    chinchilla = MUENNIGHOFF.as_chinchilla()
    assert predict_loss(MUENNIGHOFF, 7e9, 2e11, None) == chinchilla.loss(7e9, 2e11)
