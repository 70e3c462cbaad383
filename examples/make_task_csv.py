"""Write examples/olmo_tasks.csv from the OLMo ladder evaluations (see examples/README.md).

    .venv/bin/python examples/make_task_csv.py [--source ../shared/data/olmo_ladder]
        [--out examples/olmo_tasks.csv]

The runs are the ones final.json trains on (190M, 370M, 760M, 1.3B; four token multiples each,
the -rerun and 0.5xC files left out), every checkpoint of each. Besides the C4 loss, each row
carries six tasks' loss (bits per byte) and accuracy as `metric:<task>_bpb` and
`metric:<task>_acc`, combined from the evaluation columns exactly as planner.tasks does (its
TaskColumns: MMLU the question-weighted mean of four subject groups). Needs the planner package
(the repository's venv).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path

# The same runs as runs.csv, read the same way (run as a script, examples/ is on the path).
from make_runs_csv import HERE, LOSS, SOURCE, STEP, TOKENS, ladder_files, whole_number

from planner.errors import InvalidInput
from planner.tasks import TaskColumns, task

# planner.tasks names of MMLU, HellaSwag, PIQA, Social IQa, ARC-Easy and ARC-Challenge.
TASK_NAMES = (
    "mmlu_avg_test",
    "hellaswag_val",
    "piqa_val",
    "socialiqa_val",
    "arc_easy_test",
    "arc_challenge_test",
)
# Full precision would make the file about 440 KB; 6 significant digits (relative error
# <= 5e-6) make it 247 KB and move the task laws' 13B-5T predictions by about 1e-4 (MMLU;
# the other tasks under 4e-5). The C4 loss is the source's text, unchanged, as in runs.csv.
SIGNIFICANT = 6


def tasks() -> list[TaskColumns]:
    return [task(name) for name in TASK_NAMES]


def header() -> list[str]:
    metrics = [f"metric:{t.name}_{kind}" for t in tasks() for kind in ("bpb", "acc")]
    return ["run_id", "step", "params", "tokens", "loss", *metrics]


def _cell(columns: TaskColumns, row: dict[str, float], accuracy: bool) -> str:
    """A task's loss or accuracy at one evaluation; empty (not measured) if a column is."""
    try:
        value = columns.accuracy(row) if accuracy else columns.task_loss(row)
    except InvalidInput:
        return ""
    return f"{value:.{SIGNIFICANT}g}"


def run_rows(path: Path, params: int) -> Iterator[list[object]]:
    """Every evaluation of one run with a C4 loss, by step."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r[LOSS].strip()]
    rows.sort(key=lambda r: whole_number(r[STEP]))
    for row in rows:
        values = {k: float(v) for k, v in row.items() if v.strip()}
        metrics = [_cell(t, values, accuracy) for t in tasks() for accuracy in (False, True)]
        step, tokens = whole_number(row[STEP]), whole_number(row[TOKENS])
        yield [path.stem, step, params, tokens, row[LOSS].strip(), *metrics]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="olmo_ladder folder")
    parser.add_argument("--out", type=Path, default=HERE / "olmo_tasks.csv")
    args = parser.parse_args()
    rows = [row for path, n in ladder_files(args.source) for row in run_rows(path, n)]
    with args.out.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header())
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
