"""`planner compare` and `families create --metric` end to end: Gadre et al.'s multipliers on the
catalogue, LAION's crossover on laws stored with `laws put`, a plot, and usage errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.cli.test_cli import planner, planner_json
from tests.service.server_process import ServerProcess

REFINEDWEB = "overtraining-gadre-2024-refinedweb"
REDPAJAMA = "overtraining-gadre-2024-redpajama"
PNG = b"\x89PNG\r\n\x1a\n"
# Cherti et al. 2023 (LAION): a, b, c, d of a (x + b)^c + d, ImageNet zero-shot error vs GFLOPs.
LAION = {
    "cli-laion-clip": (57.862083, 18.391321, -0.226604, 0.111169),
    "cli-laion-mammut": (125.356572, 19.289384, -0.255670, 0.101112),
}
METRIC = "ImageNet zero-shot top-1 error"


@pytest.fixture(scope="module")
def laion(server: ServerProcess) -> None:
    for family, (a, b, c, d) in LAION.items():
        made = planner(server, "families", "create", family, "--metric", METRIC)
        assert made.returncode == 0, made.stderr
        put = planner(server, "laws", "put", family, "--form", "compute_power",
                      "--param", f"L_inf={d}", "--param", f"A={a}", "--param", f"alpha={-c}",
                      "--param", f"C0={b}")  # fmt: skip
        assert put.returncode == 0, put.stderr


def test_gadre_multipliers_as_json(server: ServerProcess) -> None:
    out = planner_json(server, "compare", REFINEDWEB, REDPAJAMA, "--path", "multiplier",
                       "--multiplier", "20", "--budget", "1e20", "--budget", "1e22",
                       "--budget", "1e24")  # fmt: skip
    assert [m["multiplier"] for m in out["multipliers"]] == pytest.approx(
        [1.120, 1.493, 3.694], abs=0.0005
    )
    assert out["crossovers"] == [] and [r["winner"] for r in out["ranges"]] == ["first"]
    assert (out["first_family"], out["second_family"]) == (REFINEDWEB, REDPAJAMA)
    assert all(m["band"] is None for m in out["multipliers"])


def test_gadre_as_text(server: ServerProcess) -> None:
    result = planner(server, "compare", REFINEDWEB, REDPAJAMA, "--path", "multiplier",
                     "--multiplier", "20", "--budget", "1e24")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no crossover between 1e+15 and 1e+30 FLOPs" in result.stdout
    assert "3.694x" in result.stdout and REDPAJAMA in result.stdout


def test_families_show_prints_the_metric(server: ServerProcess, laion: None) -> None:
    shown = planner_json(server, "families", "show", "cli-laion-clip")
    assert shown["metric"] == METRIC
    text = planner(server, "families", "show", REFINEDWEB).stdout
    assert "C4 validation loss, nats/token" in text


def test_laion_crossover_with_a_plot(server: ServerProcess, laion: None, tmp_path: Path) -> None:
    picture = tmp_path / "laion.png"
    result = planner(server, "compare", "cli-laion-mammut", "cli-laion-clip", "--low", "1e6",
                     "--high", "1e16", "--budget", "1e12", "--plot", str(picture),
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    [crossing] = out["crossovers"]
    assert crossing == pytest.approx(6.76e10, rel=0.001)
    # CLIP's GFLOPs to reach MaMMUT's error at 1e12 GFLOPs, from the closed forms.
    a, b, c, d = LAION["cli-laion-mammut"]
    error = a * (1e12 + b) ** c + d
    a, b, c, d = LAION["cli-laion-clip"]
    assert out["multipliers"][0]["multiplier"] == pytest.approx(
        (((error - d) / a) ** (1 / c) - b) / 1e12, rel=1e-9
    )
    assert picture.read_bytes()[:8] == PNG and out["plot"] == str(picture)


def test_a_plot_without_budgets_asks_for_the_multiplier_over_the_range(
    server: ServerProcess, laion: None, tmp_path: Path
) -> None:
    picture = tmp_path / "range.png"
    out = planner_json(server, "compare", "cli-laion-mammut", "cli-laion-clip", "--low", "1e6",
                       "--high", "1e16", "--plot", str(picture))  # fmt: skip
    budgets = [m["budget"] for m in out["multipliers"]]
    assert len(budgets) == 21 and budgets[0] == pytest.approx(1e6)
    assert budgets[10] == pytest.approx(1e11) and budgets[-1] == pytest.approx(1e16)
    assert picture.read_bytes()[:8] == PNG


def test_metric_mismatch_and_usage_errors(server: ServerProcess, laion: None) -> None:
    mismatch = planner(server, "compare", "cli-laion-clip", REFINEDWEB)
    assert mismatch.returncode == 1
    assert "FAILED_PRECONDITION" in mismatch.stderr and METRIC in mismatch.stderr
    hours = planner(server, "compare", REFINEDWEB, REDPAJAMA, "--axis", "accelerator_hours")
    assert hours.returncode == 2 and "--throughput-a" in hours.stderr
    bad = planner(server, "compare", REFINEDWEB, REDPAJAMA, "--budget", "-1")
    assert bad.returncode == 1 and "budgets[0]" in bad.stderr


def test_accelerator_hours_axis(server: ServerProcess) -> None:
    """The same law on both sides, B at 2/3 of A's FLOP/s: B needs 1.5x the hours."""
    out = planner_json(server, "compare", REFINEDWEB, REFINEDWEB, "--path", "multiplier",
                       "--multiplier", "20", "--axis", "accelerator_hours", "--throughput-a",
                       "3e14", "--throughput-b", "2e14", "--budget", "1e5")  # fmt: skip
    assert out["multipliers"][0]["multiplier"] == pytest.approx(1.5, rel=1e-9)
    assert out["axis_values"][0] == pytest.approx(1e15 / (3600 * 3e14))
    assert not math.isnan(out["ranges"][0]["low"])


def test_compare_on_the_params_axis(server: ServerProcess) -> None:
    """--axis params at M = 20: at N = 1e9, RedPajama's N over RefinedWeb's is the square root
    of the compute multiplier at C = 6 M N^2 (written out from Gadre et al.'s closed form)."""
    out = planner_json(
        server, "compare", "overtraining-gadre-2024-refinedweb",
        "overtraining-gadre-2024-redpajama", "--path", "multiplier", "--multiplier", "20",
        "--axis", "params", "--budget", "1e9",
    )  # fmt: skip
    rw = dict(E=1.7345, a=157.1163, b=246.2067, eta=0.12720)
    rp = dict(E=1.8366, a=212.2361, b=366.6872, eta=0.13643)
    scale = lambda p: p["a"] * 20 ** p["eta"] + p["b"] * 20 ** -p["eta"]  # noqa: E731
    compute = 6 * 20 * 1e9**2
    loss = rw["E"] + scale(rw) * compute ** -rw["eta"]
    needed = (scale(rp) / (loss - rp["E"])) ** (1 / rp["eta"])
    [row] = out["multipliers"]
    assert row["multiplier"] == pytest.approx((needed / compute) ** 0.5, rel=1e-9)
