"""`planner task fit|predict|plot` and `planner optimal --target-accuracy` end to end, on
examples/olmo_tasks.csv (the OLMo ladder's 16 runs with six tasks' metrics)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.cli.test_cli import planner, planner_json
from tests.service.server_process import ServerProcess
from tests.unit.test_task_laws import CHAINED_13B, TARGET_13B

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "olmo_tasks.csv"
FAMILY = "cli-olmo-tasks"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(server: ServerProcess) -> dict[str, float]:
    """The example added and PIQA fitted with a small bootstrap; the stored parameters."""
    planner_json(server, "families", "create", FAMILY)
    planner_json(server, "runs", "add", FAMILY, str(EXAMPLE))
    out = planner_json(
        server,
        "task",
        "fit",
        FAMILY,
        "--task",
        "piqa_val",
        "--loss-metric",
        "piqa_val_bpb",
        "--accuracy-metric",
        "piqa_val_acc",
        "--chance",
        "0.5",
        "--bootstrap",
        "4",
    )
    assert out["form"] == "task_link:piqa_val" and out["current"]
    assert out["options"]["accuracy_metric"] == "piqa_val_acc"
    params: dict[str, float] = out["params"]
    return params


def test_task_predict_reproduces_the_13b_prediction(
    server: ServerProcess, fitted: dict[str, float]
) -> None:
    n, d = TARGET_13B
    out = planner_json(
        server,
        "task",
        "predict",
        FAMILY,
        "--task",
        "piqa_val",
        "--params",
        str(n),
        "--tokens",
        str(d),
    )
    assert abs(out["accuracy"] - CHAINED_13B["piqa_val"][0]) < 0.01
    p = fitted
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    assert out["task_loss"] == pytest.approx(loss, rel=1e-12)
    assert out["floor"] == pytest.approx(p["a"] + p["b"]) and out["ceiling"] == p["b"]
    low, high = out["interval"]
    assert low < high and out["law"] == {"form": "task_link:piqa_val", "version": 1}
    text = planner(
        server,
        "task",
        "predict",
        FAMILY,
        "--task",
        "piqa_val",
        "--params",
        str(n),
        "--tokens",
        str(d),
    )
    assert text.returncode == 0
    assert f"accuracy {out['accuracy']:.4f}" in text.stdout and "95% band" in text.stdout


def test_optimal_with_a_target_accuracy(server: ServerProcess, fitted: dict[str, float]) -> None:
    out = planner_json(server, "optimal", FAMILY, "--target-accuracy", "piqa_val=0.8")
    p = fitted
    loss = p["E"] + p["A"] / out["params"] ** p["alpha"] + p["B"] / out["tokens"] ** p["beta"]
    accuracy = p["a"] / (1 + math.exp(-p["k"] * (loss - p["x0"]))) + p["b"]
    assert accuracy == pytest.approx(0.8, abs=1e-9)
    assert out["loss"] == pytest.approx(loss, rel=1e-9)


def test_overtrain_with_a_target_accuracy_at_a_multiplier(
    server: ServerProcess, fitted: dict[str, float]
) -> None:
    """At M = 100 tokens per parameter: D = 100 N, and the accuracy reached is the target."""
    out = planner_json(
        server, "overtrain", FAMILY, "--target-accuracy", "piqa_val=0.8", "--multiplier", "100"
    )
    n, d = out["params"], out["tokens"]
    assert d == pytest.approx(100 * n, rel=1e-9)
    p = fitted
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    accuracy = p["a"] / (1 + math.exp(-p["k"] * (loss - p["x0"]))) + p["b"]
    assert accuracy == pytest.approx(0.8, abs=1e-9)


def test_task_plot_writes_a_png(
    server: ServerProcess, fitted: dict[str, float], tmp_path: Path
) -> None:
    out = tmp_path / "piqa.png"
    result = planner_json(server, "task", "plot", FAMILY, "--task", "piqa_val", str(out))
    assert result["out"] == str(out) and out.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (
            [
                "task",
                "predict",
                FAMILY,
                "--task",
                "hellaswag_val",
                "--params",
                "1e9",
                "--tokens",
                "2e10",
            ],
            1,
            "no task law for task 'hellaswag_val'",
        ),
        (["optimal", FAMILY, "--target-accuracy", "piqa_val=0.3"], 1, "outside the piqa_val link"),
        (["optimal", FAMILY, "--target-accuracy", "piqa_val"], 2, "TASK=ACCURACY"),
        (["task", "fit", FAMILY, "--task", "piqa_val", "--window", "0"], 1, "task.window"),
    ],
)
def test_task_errors(
    server: ServerProcess, fitted: dict[str, float], args: list[str], code: int, match: str
) -> None:
    result = planner(server, *args)
    assert result.returncode == code, result.stderr
    assert match in result.stderr
