"""Write examples/runs.csv from the OLMo ladder evaluations (see examples/README.md).

    python examples/make_runs_csv.py [--source ../shared/data/olmo_ladder] [--out examples/runs.csv]

The rungs are the ones final.json trains on (190M, 370M, 760M, 1.3B; four token multiples each,
the -rerun and 0.5xC files left out). From each run's file: the first evaluation at or after
50%, 62.5%, 75% and 87.5% of the run's final token count, and the final evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "olmo_ladder"
LOSS = "eval/c4_en-validation/CrossEntropyLoss"
TOKENS = "throughput/total_tokens"
STEP = "_step"
# Checkpoints per run before the final one: the first evaluation at or after each fraction of
# the run's final tokens.
FRACTIONS = (0.5, 0.625, 0.75, 0.875)
HEADER = ("run_id", "step", "params", "tokens", "loss")


def whole_number(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def ladder_files(source: Path) -> list[tuple[Path, int]]:
    """(evaluation file, parameter count n) of every training run final.json lists."""
    config = json.loads((source / "final.json").read_text())
    return [
        (source / Path(path).name, int(rung["n"]))
        for rung in config.values()
        if rung["mode"] == "train"
        for path in rung["paths"]
    ]


def run_rows(path: Path, params: int) -> list[tuple[str, int, int, int, str]]:
    """The chosen (run_id, step, params, tokens, loss) rows of one run, by step."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r[LOSS].strip()]
    rows.sort(key=lambda r: whole_number(r[STEP]))
    final = rows[-1]
    total = whole_number(final[TOKENS])
    chosen = []
    for fraction in FRACTIONS:
        row = next(r for r in rows if whole_number(r[TOKENS]) >= fraction * total)
        if row is not final and row not in chosen:
            chosen.append(row)
    chosen.append(final)
    return [
        (path.stem, whole_number(r[STEP]), params, whole_number(r[TOKENS]), r[LOSS].strip())
        for r in chosen
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="olmo_ladder folder")
    parser.add_argument("--out", type=Path, default=HERE / "runs.csv")
    args = parser.parse_args()
    rows = [row for path, n in ladder_files(args.source) for row in run_rows(path, n)]
    with args.out.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
