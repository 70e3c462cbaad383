"""examples/olmo_tasks.csv: every checkpoint of the OLMo ladder's 16 training runs with six tasks'
loss and accuracy as metric columns (examples/README.md). The file is what its generator writes,
its values are the source's (to its 6 significant digits), and task laws fitted on it predict
13B-5T as those fitted on the raw evaluations do, and as the authors published."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from clients.csv_runs import read_runs
from clients.results import Run
from planner.tasks import RunCheckpoints, TaskScalingLaw, fit_task_scaling_law, task
from tests.unit import olmo_ladder_data as data
from tests.unit.test_task_laws import CHAINED_13B, STEP1_13B, TARGET_13B

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "olmo_tasks.csv"
# MMLU, HellaSwag, PIQA, Social IQa, ARC-Easy, ARC-Challenge.
TASK_NAMES = (
    "mmlu_avg_test",
    "hellaswag_val",
    "piqa_val",
    "socialiqa_val",
    "arc_easy_test",
    "arc_challenge_test",
)
# MMLU's subject groups and their shares of questions (the ladder's WEIGHT_BY_KEY), written
# out here rather than taken from planner.tasks, which the generator uses.
MMLU_GROUPS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}


def _rows() -> list[dict[str, str]]:
    with EXAMPLE.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _expected(source: dict[str, str], name: str) -> tuple[float, float]:
    """A task's (bpb, accuracy) at one evaluation, from the OLMo evaluator's columns."""
    if name == "mmlu_avg_test":
        total = sum(MMLU_GROUPS.values())
        bpb = sum(
            w * float(source[f"eval/downstream_bpb/mmlu_{g}_test_rc_5shot_bpb"])
            for g, w in MMLU_GROUPS.items()
        )
        acc = sum(
            w * float(source[f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm"])
            for g, w in MMLU_GROUPS.items()
        )
        return bpb / total, acc / total
    return (
        float(source[f"eval/downstream_bpb/{name}_rc_5shot_bpb"]),
        float(source[f"eval/downstream/{name}_rc_5shot_len_norm"]),
    )


def test_every_checkpoint_of_the_sixteen_runs(shared_data: Path) -> None:
    rows = _rows()
    assert list(rows[0])[:5] == ["run_id", "step", "params", "tokens", "loss"]
    assert list(rows[0])[5:] == [
        f"metric:{name}_{kind}" for name in TASK_NAMES for kind in ("bpb", "acc")
    ]
    rungs = {
        Path(str(path)).stem: int(str(rung["n"]))
        for rung in data.rungs(shared_data).values()
        if rung["mode"] == "train"
        for path in rung["paths"]  # type: ignore[attr-defined]
    }
    assert len(rungs) == 16
    count = 0
    for stem, n in rungs.items():
        source = data.read_rows(data.folder(shared_data) / f"{stem}.csv")
        mine = [r for r in rows if r["run_id"] == stem]
        assert [int(r["step"]) for r in mine] == sorted(int(float(s["_step"])) for s in source)
        by_step = {int(float(s["_step"])): s for s in source}
        for row in mine:
            origin = by_step[int(row["step"])]
            assert int(row["params"]) == n
            assert float(row["tokens"]) == float(origin[data.TOKENS])
            assert row["loss"] == origin["eval/c4_en-validation/CrossEntropyLoss"]
            for name in TASK_NAMES:
                bpb, acc = _expected(origin, name)
                assert float(row[f"metric:{name}_bpb"]) == pytest.approx(bpb, rel=5e-6)
                assert float(row[f"metric:{name}_acc"]) == pytest.approx(acc, rel=5e-6)
        count += len(mine)
    assert count == len(rows) == 1566
    assert EXAMPLE.stat().st_size < 260_000


def test_make_task_csv_reproduces_the_file(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "olmo_tasks.csv"
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_task_csv.py"),
         "--source", str(shared_data / "olmo_ladder"), "--out", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert out.read_bytes() == EXAMPLE.read_bytes()


def _csv_runs(runs: list[Run], name: str) -> list[RunCheckpoints]:
    """The file's runs as the task-law package's input: its metrics, through the CLI reader."""
    by_run: dict[str, list[Run]] = {}
    for run in runs:
        by_run.setdefault(run.run_id, []).append(run)
    return [
        RunCheckpoints.of(
            params=rows[0].params,
            tokens=[r.tokens for r in rows],
            task_loss=[r.metrics[f"{name}_bpb"] for r in rows],
            accuracy=[r.metrics[f"{name}_acc"] for r in rows],
        )
        for rows in by_run.values()
    ]


@pytest.fixture(scope="module")
def fitted(shared_data: Path) -> dict[str, tuple[TaskScalingLaw, TaskScalingLaw]]:
    """(fitted on the example's values, fitted on the raw evaluations) per task."""
    runs = read_runs(EXAMPLE)
    laws = {}
    for name in TASK_NAMES:
        columns = task(name)
        example = fit_task_scaling_law(_csv_runs(runs, name), chance=columns.chance)
        raw = fit_task_scaling_law(data.training_runs(shared_data, columns), chance=columns.chance)
        laws[name] = (example, raw)
    return laws


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_example_predicts_13b_5t_as_the_raw_data(
    fitted: dict[str, tuple[TaskScalingLaw, TaskScalingLaw]], name: str
) -> None:
    example, raw = fitted[name]
    mine, theirs = example.predict(*TARGET_13B), raw.predict(*TARGET_13B)
    assert mine.accuracy == pytest.approx(theirs.accuracy, abs=1e-3)
    assert example.loss_law.loss(*TARGET_13B) == pytest.approx(
        raw.loss_law.loss(*TARGET_13B), abs=1e-3
    )
    # And as the authors published (the raw fit matches them to 1e-4, test_task_laws.py).
    assert mine.accuracy == pytest.approx(CHAINED_13B[name][0], abs=1e-3)
    assert example.loss_law.loss(*TARGET_13B) == pytest.approx(STEP1_13B[name][0], abs=1e-3)
