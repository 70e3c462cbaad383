"""CompareLaws through the service: issue 13's published checks (Gadre et al. 2024 on the
catalogue, LAION's CLIP vs MaMMUT as stored compute_power laws), the accelerator-hours axis,
bands from fitted ensembles, the metric check and bad input. References are computed here."""

from __future__ import annotations

import math

import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import LawSelector, Run

REFINEDWEB = "overtraining-gadre-2024-refinedweb"
REDPAJAMA = "overtraining-gadre-2024-redpajama"
# Gadre et al. 2024, E, a, b, eta of eq. (4) per dataset (the fits of their released code).
GADRE = {
    REFINEDWEB: (1.7345, 157.1163, 246.2067, 0.12720),
    REDPAJAMA: (1.8366, 212.2361, 366.6872, 0.13643),
}
# Cherti et al. 2023 (LAION), ImageNet zero-shot error vs GFLOPs, a (x + b)^c + d.
CLIP = (57.862083, 18.391321, -0.226604, 0.111169)
MAMMUT = (125.356572, 19.289384, -0.255670, 0.101112)


def _gadre_loss(family: str, compute: float, m: float) -> float:
    e, a, b, eta = GADRE[family]
    return e + (a * m**eta + b * m**-eta) * compute**-eta


def _gadre_compute(family: str, loss: float, m: float) -> float:
    e, a, b, eta = GADRE[family]
    return ((a * m**eta + b * m**-eta) / (loss - e)) ** (1 / eta)


def _laion(curve: tuple[float, float, float, float], x: float) -> float:
    a, b, c, d = curve
    return a * (x + b) ** c + d


def _put_laion(client: PlannerClient, family: str, curve: tuple[float, ...]) -> None:
    a, b, c, d = curve
    client.create_family(family, metric="ImageNet zero-shot top-1 error")
    client.put_law(family, "compute_power", {"L_inf": d, "A": a, "alpha": -c, "C0": b})


def test_redpajama_needs_more_compute_than_refinedweb(client: PlannerClient) -> None:
    budgets = [1e20, 1e22, 1e24]
    result = client.compare_laws(
        REFINEDWEB, REDPAJAMA, path="multiplier", multiplier=20.0, budgets=budgets
    )
    assert [m.multiplier for m in result.multipliers] == pytest.approx(
        [1.120, 1.493, 3.694], abs=0.0005
    )
    for at in result.multipliers:
        loss = _gadre_loss(REFINEDWEB, at.budget, 20.0)
        assert at.first_loss == pytest.approx(loss, rel=1e-12)
        by_hand = _gadre_compute(REDPAJAMA, loss, 20.0) / at.budget
        assert at.multiplier == pytest.approx(by_hand, rel=1e-9)
        assert at.band is None  # published laws have no ensembles
    assert result.crossovers == []
    [only] = result.ranges
    assert (only.low, only.high, only.winner) == (pytest.approx(1e15), pytest.approx(1e30), "first")
    assert (result.first_family, result.first_law.form) == (REFINEDWEB, "overtraining")
    assert (result.second_family, result.second_law.method) == (REDPAJAMA, "published")
    assert len(result.axis_values) == 100
    assert result.second_loss[-1] == pytest.approx(
        _gadre_loss(REDPAJAMA, result.axis_values[-1], 20.0), rel=1e-12
    )


def test_clip_and_mammut_as_stored_compute_power_laws(
    client: PlannerClient, family_name: str
) -> None:
    clip, mammut = f"{family_name[:80]}-clip", f"{family_name[:80]}-mammut"
    _put_laion(client, clip, CLIP)
    _put_laion(client, mammut, MAMMUT)
    # Budgets in GFLOPs as plain numbers: the axis is whatever unit the laws were fitted in.
    result = client.compare_laws(mammut, clip, low=1e6, high=1e16, budgets=[1e12])
    low, high = math.log(1e8), math.log(1e14)
    for _ in range(200):  # bisection on the published closed forms
        middle = (low + high) / 2
        if _laion(CLIP, math.exp(middle)) < _laion(MAMMUT, math.exp(middle)):
            low = middle
        else:
            high = middle
    [crossing] = result.crossovers
    assert crossing == pytest.approx(math.exp(low), rel=1e-9)
    assert crossing == pytest.approx(6.76e10, rel=0.001)
    assert [r.winner for r in result.ranges] == ["second", "first"]  # CLIP, then MaMMUT
    [at] = result.multipliers
    loss = _laion(MAMMUT, 1e12)
    a, b, c, d = CLIP
    clip_gflops = ((loss - d) / a) ** (1 / c) - b
    assert at.multiplier == pytest.approx(clip_gflops / 1e12, rel=1e-9)
    assert at.multiplier == pytest.approx(1.76, abs=0.005)


def test_accelerator_hours_against_a_hand_computation(
    client: PlannerClient, family_name: str
) -> None:
    first, second = f"{family_name[:80]}-a", f"{family_name[:80]}-b"
    client.create_family(first)
    client.create_family(second)
    client.put_law(first, "compute_power", {"L_inf": 1.7, "A": 3000.0, "alpha": 0.17})
    client.put_law(second, "compute_power", {"L_inf": 1.6, "A": 2500.0, "alpha": 0.15})
    hours = 1e5
    result = client.compare_laws(
        first, second, axis="accelerator_hours", first_flops_per_second=3.0e14,
        second_flops_per_second=4.5e14, budgets=[hours],
    )  # fmt: skip
    loss = 1.7 + 3000.0 * (hours * 3600 * 3.0e14) ** -0.17
    second_hours = (2500.0 / (loss - 1.6)) ** (1 / 0.15) / (3600 * 4.5e14)
    assert result.multipliers[0].multiplier == pytest.approx(second_hours / hours, rel=1e-9)
    # No range given: 1e15 to 1e30 FLOPs in the first recipe's hours.
    assert result.axis_values[0] == pytest.approx(1e15 / (3600 * 3.0e14), rel=1e-12)
    assert result.axis_values[-1] == pytest.approx(1e30 / (3600 * 3.0e14), rel=1e-12)


def _runs(law: tuple[float, float, float], wobble: float = 0.0) -> list[Run]:
    """Twelve runs on L = L_inf + A C^-alpha at measured FLOPs, each loss scaled by
    1 +- wobble (alternating), so a fit is exact when wobble is 0."""
    l_inf, a, alpha = law
    runs = []
    for i in range(12):
        params = 1e7 * 10 ** (i / 4)
        flops = 6 * params * 20 * params
        loss = (l_inf + a * flops**-alpha) * (1 + wobble * (-1) ** i)
        runs.append(Run(f"r{i}", params, 20 * params, loss, flops=flops))
    return runs


@pytest.mark.parametrize("wobble", [0.0, 0.004])
def test_bands_come_from_the_two_fitted_ensembles(
    client: PlannerClient, family_name: str, wobble: float
) -> None:
    first, second = f"{family_name[:80]}-a", f"{family_name[:80]}-b"
    for name, law in ((first, (1.7, 3000.0, 0.17)), (second, (1.6, 2500.0, 0.15))):
        client.create_family(name)
        client.add_runs(name, _runs(law, wobble))
        fitted = client.fit_law(name, form="compute_power", bootstrap=20)
        assert fitted.ensemble_size >= 10
    budget = 1e21
    result = client.compare_laws(first, second, budgets=[budget])
    [at] = result.multipliers
    assert at.band is not None
    loss = 1.7 + 3000.0 * budget**-0.17
    exact = (2500.0 / (loss - 1.6)) ** (1 / 0.15) / budget
    if wobble == 0:  # every resample refits the generating law: the band is a point
        assert at.multiplier == pytest.approx(exact, rel=1e-4)
        assert (at.band.p5, at.band.p50, at.band.p95) == pytest.approx((exact,) * 3, rel=1e-4)
        # The fitted law predicts through C = 6 N D, with its ensemble's band.
        predicted = client.predict(first, 1e9, 2e10)
        assert predicted.loss == pytest.approx(1.7 + 3000.0 * (6 * 1e9 * 2e10) ** -0.17, rel=1e-5)
        assert predicted.interval == pytest.approx((predicted.loss,) * 2, rel=1e-4)
    else:
        assert at.band.p5 < at.band.p95
        assert at.band.p5 <= at.multiplier <= at.band.p95
    # Against a law without an ensemble: no band.
    client.put_law(second, "compute_power", {"L_inf": 1.6, "A": 2500.0, "alpha": 0.15})
    assert client.compare_laws(first, second, budgets=[budget]).multipliers[0].band is None


def test_different_metrics_are_refused_naming_both(client: PlannerClient, family_name: str) -> None:
    clip = f"{family_name[:80]}-clip"
    _put_laion(client, clip, CLIP)
    with pytest.raises(PlannerClientError) as caught:
        client.compare_laws(clip, REFINEDWEB, budgets=[1e12])
    assert caught.value.code == "FAILED_PRECONDITION"
    message = caught.value.message
    assert "ImageNet zero-shot top-1 error" in message and "C4 validation loss" in message
    # A family that does not say what it measures is compared with anything.
    unsaid = f"{family_name[:80]}-unsaid"
    client.create_family(unsaid)
    client.put_law(unsaid, "compute_power", {"L_inf": 1.7, "A": 3000.0, "alpha": 0.17})
    assert client.compare_laws(unsaid, REFINEDWEB, path="multiplier", multiplier=20.0).ranges


def test_laws_that_cannot_be_compared_are_refused(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.put_law(family_name, "bnsl_params", {"a": 1.0, "b": 10.0, "c0": 0.2})
    # Falls as C^-0.2, then rises past 1e22 FLOPs (break slope change -0.3).
    rising = {"a": 1.0, "b": 1e4, "c0": 0.2, "c1": -0.3, "d1": 1e22, "f1": 0.5}
    client.put_law(family_name, "bnsl_compute", rising)
    for form, match in (("bnsl_params", "curve of params alone"), ("bnsl_compute", "rises")):
        with pytest.raises(PlannerClientError) as caught:
            client.compare_laws(LawSelector(family_name, form), REFINEDWEB)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert match in caught.value.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"path": "diagonal"}, "path"),
        ({"path": "multiplier"}, "multiplier"),
        ({"path": "multiplier", "multiplier": 0.0}, "multiplier"),
        ({"axis": "dollars"}, "axis"),
        ({"axis": "accelerator_hours", "first_flops_per_second": 4e14},
         "second_flops_per_accelerator_second"),
        ({"budgets": [1e20, math.nan]}, "budgets[1]"),
        ({"budgets": [-1e20]}, "budgets[0]"),
        ({"budgets": [1e20] * 101}, "budgets"),
        ({"low": 1e22, "high": 1e20}, "high"),
        ({"low": -1.0}, "low"),
        ({"points": 1}, "points"),
        ({"points": 5000}, "points"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(
    client: PlannerClient, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.compare_laws(REFINEDWEB, REDPAJAMA, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == [field]


def test_an_unknown_family_is_named_by_its_side(client: PlannerClient) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.compare_laws(REFINEDWEB, "no-such-family")
    assert caught.value.code == "NOT_FOUND"
    assert [v.field for v in caught.value.violations] == ["second.family"]
    with pytest.raises(PlannerClientError) as bad:
        client.compare_laws("Not A Name", REFINEDWEB)
    assert [v.field for v in bad.value.violations] == ["first.family"]


def test_long_band_work_on_the_fit_processes_answers_the_same(
    client: PlannerClient, family_name: str
) -> None:
    """60 paired rows x 100 budgets is over the solver processes' share: the same answer
    comes from the fit processes."""
    first, second = f"{family_name[:80]}-a", f"{family_name[:80]}-b"
    for name, law in ((first, (1.7, 3000.0, 0.17)), (second, (1.6, 2500.0, 0.15))):
        client.create_family(name)
        client.add_runs(name, _runs(law, 0.004))
        client.fit_law(name, form="compute_power", bootstrap=60)
    budgets = [1e18 * 1.1**i for i in range(100)]
    long = client.compare_laws(first, second, budgets=budgets)
    short = client.compare_laws(first, second, budgets=budgets[:3])
    assert long.multipliers[:3] == short.multipliers
    assert all(m.band is not None for m in long.multipliers)
