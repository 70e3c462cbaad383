"""`planner curve` and `planner schedule` end to end, with Luo et al.'s printed 25M Multi-Power
Law parameters (shared data README) stored through the Python client (the CLI has no command
that stores given parameters)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from clients import PlannerClient
from planner.curves import MultiPowerLaw, schedules
from tests.cli.test_cli import planner, planner_json
from tests.service.server_process import ServerProcess
from tests.service.test_law_kinds import MPL_25M

COSINE = "cosine:steps=24000,peak=3e-4,floor=3e-5,warmup=2160"
WSD = "wsd:steps=24000,peak=3e-4,floor=3e-5,warmup=2160,decay_fraction=0.2,shape=exponential"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def family(server: ServerProcess) -> str:
    name = "cli-mpl-25m"
    with PlannerClient(server.target) as client:
        client.create_family(name)
        client.put_law(name, "multi_power", MPL_25M, citation="Luo et al. 2025")
    return name


def test_curve_json_follows_the_specs(server: ServerProcess, family: str) -> None:
    out = planner_json(server, "curve", family, "--schedule", COSINE, "--schedule", WSD,
                       "--points", "100")  # fmt: skip
    assert set(out) == {"curves", "law"} and out["law"]["form"] == "multi_power"
    cosine, wsd = out["curves"]
    assert (cosine["name"], wsd["name"]) == ("cosine", "wsd")
    assert cosine["steps"] == list(range(240, 24_001, 240))
    law = MultiPowerLaw(**MPL_25M)
    built = {
        "cosine": schedules.cosine(24_000, 3e-4, 3e-5, 2160),
        "wsd": schedules.wsd(24_000, 3e-4, 3e-5, 2160, decay_fraction=0.2, shape="exponential"),
    }
    for curve in (cosine, wsd):
        rates = built[curve["name"]]
        expected = law.predict(rates, np.array(curve["steps"]) - 1, resolution=None)
        np.testing.assert_allclose(curve["loss"], expected, rtol=1e-6)
        final = law.predict(rates, [23_999], resolution=None)[0]
        assert curve["final_loss"] == pytest.approx(final, rel=1e-12)
    assert wsd["final_loss"] < cosine["final_loss"]  # the published runs' order
    text = planner(server, "curve", family, "--schedule", COSINE)
    assert text.returncode == 0 and "FINAL LOSS" in text.stdout and "multi_power v" in text.stdout


def test_curve_from_a_file_with_a_plot_and_observed_points(
    server: ServerProcess, family: str, tmp_path: Path, shared_data: Path
) -> None:
    rates = tmp_path / "mine.csv"
    with rates.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr"])
        writer.writerows(enumerate(schedules.cosine(24_000, 3e-4, 3e-5, 2160).tolist()))
    picture = tmp_path / "curves.png"
    observed = shared_data / "lr_schedules" / "mpl_25M" / "cosine_24000.csv"
    out = planner_json(server, "curve", family, "--schedule", f"file:{rates}", "--schedule",
                       COSINE, "--plot", str(picture), "--observed", str(observed))  # fmt: skip
    mine, named = out["curves"]
    assert mine["name"] == "mine" and mine["loss"] == pytest.approx(named["loss"], rel=1e-14)
    assert out["plot"] == str(picture)
    image = picture.read_bytes()
    assert image[:8] == PNG and len(image) > 20_000
    # A published curve logs every 128th step: not a per-step schedule.
    sampled = planner(server, "curve", family, "--schedule", f"file:{observed}")
    assert sampled.returncode == 2 and "every step from 0" in sampled.stderr


def test_schedule_wsd_decay_and_optimal(server: ServerProcess, family: str, tmp_path: Path) -> None:
    base = ["schedule", family, "--steps", "24000", "--peak", "3e-4", "--floor", "3e-5",
            "--warmup", "2160"]  # fmt: skip
    decay = planner_json(server, *base, "--points", "20")
    assert 0 < decay["decay_fraction"] < 0.5 and decay["gain_over_cosine"] > 0.02
    assert decay["schedule"]["family"] == "wsd" and decay["schedule"]["decay_shape"] == "linear"
    assert len(decay["curve"]["steps"]) == 20
    assert decay["cosine_final_loss"] - decay["final_loss"] == pytest.approx(
        decay["gain_over_cosine"], rel=1e-12
    )
    picture = tmp_path / "optimal.png"
    best = planner_json(server, *base, "--mode", "optimal", "--plot", str(picture))
    rates = np.array(best["schedule"]["lrs"])
    assert rates.size == 24_000 and np.all(np.diff(rates[2160:]) <= 0)
    assert best["final_loss"] <= decay["final_loss"] and best["decay_fraction"] is None
    assert picture.read_bytes()[:8] == PNG
    text = planner(server, *base, "--shape", "sqrt")
    assert text.returncode == 0 and "sqrt decay over the last" in text.stdout
    assert "gain over cosine" in text.stdout


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["curve", "--schedule", "cosine:steps=100,peak=3e-4,colour=red"], 2, "unknown key"),
        (["curve", "--schedule", "cosine:peak=3e-4"], 2, "steps and peak are required"),
        (["curve", "--schedule", "cosine:steps=1e2.5,peak=3e-4"], 2, "steps must be a number"),
        (["curve", "--schedule", "sawtooth:steps=100,peak=3e-4"], 2, "family must be one of"),
        (["curve", "--schedule", "cosine:steps=100,peak=-1"], 1, "schedules[0].named.peak_lr"),
        (
            ["schedule", "--steps", "100", "--peak", "3e-4", "--floor", "3e-4", "--warmup", "0"],
            1,
            "floor_lr",
        ),
    ],
)
def test_bad_input_says_what_is_wrong(
    server: ServerProcess, family: str, arguments: list[str], code: int, message: str
) -> None:
    result = planner(server, arguments[0], family, *arguments[1:])
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
