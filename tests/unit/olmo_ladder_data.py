"""Reads the OLMo ladder's released evaluation logs (shared/data/olmo_ladder, allenai/OLMo-ladder
src/scripts/paper/data/ladder-runs @67a3f44) into the task-law package's inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from planner.tasks import RunCheckpoints, TaskColumns

TOKENS = "throughput/total_tokens"


def folder(shared_data: Path) -> Path:
    return shared_data / "olmo_ladder"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def rungs(shared_data: Path) -> dict[str, dict[str, object]]:
    """final.json: each rung's run files, parameter count `n` and mode (train or eval)."""
    config: dict[str, dict[str, object]] = json.loads(
        (folder(shared_data) / "final.json").read_text()
    )
    return config


def run_checkpoints(path: Path, params: float, task: TaskColumns) -> RunCheckpoints:
    rows = read_rows(path)
    values = [{k: float(v) for k, v in row.items() if v != ""} for row in rows]
    return RunCheckpoints.of(
        params=params,
        tokens=[row[TOKENS] for row in values],
        task_loss=[task.task_loss(row) for row in values],
        accuracy=[task.accuracy(row) for row in values],
    )


def training_runs(shared_data: Path, task: TaskColumns) -> list[RunCheckpoints]:
    """The runs final.json marks for fitting (mode "train"), with its `n` per rung."""
    runs = []
    for rung in rungs(shared_data).values():
        if rung["mode"] != "train":
            continue
        paths = rung["paths"]
        assert isinstance(paths, list)
        for repo_path in paths:
            name = Path(str(repo_path)).name
            runs.append(run_checkpoints(folder(shared_data) / name, float(str(rung["n"])), task))
    return runs


def anneal_row(shared_data: Path) -> dict[str, float]:
    """The 7B-4T target's single row of final (post-anneal) evaluations."""
    (row,) = read_rows(folder(shared_data) / "peteish7_eval_anneal.csv")
    return {k: float(v) for k, v in row.items() if v != ""}
