"""FitIsoFLOP and FitBrokenPowerLaw on a real server: published IsoFLOP data, a known BNSL."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import Run
from planner.laws.bnsl import Break, BrokenPowerLaw


def test_isoflop_on_the_chinchilla_profiles(
    client: PlannerClient, family_name: str, data_dir: Path
) -> None:
    """Hoffmann et al. Approach 2: 9 budgets 6e18..3e21, a = 0.49 (CI 0.462-0.534)."""
    with (data_dir / "chinchilla_isoflops_ml_scalefit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    client.create_family(family_name)
    client.add_runs(
        family_name,
        [
            Run(f"iso-{i}", float(r["params"]), float(r["tokens"]), float(r["loss"]))
            for i, r in enumerate(rows)
        ],
    )
    # No run carries its budget: the profiles are recovered from 6 N D.
    result = client.fit_isoflop(family_name)
    budgets = sorted({float(r["budget"]) for r in rows})
    assert len(result.vertices) == 9
    for vertex, budget in zip(result.vertices, budgets, strict=True):
        assert vertex.flops == pytest.approx(budget, rel=0.1)  # 6ND scatters by +-10%
        assert vertex.tokens == pytest.approx(vertex.flops / (6 * vertex.params), rel=1e-12)
    assert sum(v.runs for v in result.vertices) <= len(rows)
    assert 0.462 <= result.params_exponent <= 0.534
    assert "biased" in result.caveat
    assert client.list_law_versions(family_name) == []  # nothing stored


def test_isoflop_refuses_data_without_profiles(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.add_runs(
        family_name, [Run(f"r{i}", 1e8 * 4**i, 2e9 * 4**i, 3.0 - i / 5) for i in range(5)]
    )
    with pytest.raises(PlannerClientError) as caught:
        client.fit_isoflop(family_name)
    assert caught.value.code == "FAILED_PRECONDITION"
    assert "at least 3 compute budgets" in caught.value.message
    assert "found 5 runs in 5 budgets" in caught.value.message


def test_broken_power_law_against_params(client: PlannerClient, family_name: str) -> None:
    """Runs on a one-break curve (LAWS.md §11.9's example) are refitted; predictions beyond the
    largest run are flagged as extrapolation."""
    truth = BrokenPowerLaw(a=0.1, b=1.0, c0=0.2, breaks=(Break(0.3, 1e4, 0.5),))
    sizes = np.logspace(0, 8, 40)
    client.create_family(family_name)
    client.add_runs(
        family_name,
        [
            Run(f"b{i}", float(n), 1e10, float(loss))
            for i, (n, loss) in enumerate(zip(sizes, truth.predict(sizes), strict=True))
        ],
    )
    result = client.fit_broken_power_law(family_name, "params", predict_at=[1e3, 1e8, 1e10])
    assert result.runs == 40 and result.breaks == 1
    assert (
        set(result.held_out_error) >= {0, 1} and result.held_out_error[1] < result.held_out_error[0]
    )
    assert result.fitted_up_to == pytest.approx(1e8)
    assert [p.extrapolation for p in result.predictions] == [False, False, True]
    for point in result.predictions[:2]:
        assert point.value == pytest.approx(float(truth.predict(point.x)), rel=1e-3)
    fixed = client.fit_broken_power_law(family_name, "params", breaks=0)
    assert fixed.breaks == 0 and fixed.held_out_error == {}
    for kwargs, field in (
        ({"against": "steps"}, "against"),
        ({"breaks": 4}, "breaks"),
        ({"predict_at": [-1.0]}, "predict_at[0]"),
    ):
        with pytest.raises(PlannerClientError) as caught:
            client.fit_broken_power_law(family_name, **kwargs)  # type: ignore[arg-type]
        assert caught.value.code == "INVALID_ARGUMENT"
        assert [v.field for v in caught.value.violations] == [field]
