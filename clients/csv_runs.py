"""Read training runs from CSV: header params,tokens,loss[,unique_tokens,flops,step,run_id]."""

from __future__ import annotations

import csv
from pathlib import Path

from clients.results import Run

REQUIRED = ("params", "tokens", "loss")
OPTIONAL = ("unique_tokens", "flops", "step", "run_id")


class CsvError(ValueError):
    """The file cannot be read as runs; the message names the line and column."""


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CsvError(f"{path}:{line}: column {column!r}: {text!r} is not a number") from None


def read_runs(path: Path) -> list[Run]:
    """Every row as a Run; unknown columns are an error, empty optional cells are unset."""
    try:
        handle = path.open(newline="")
    except OSError as error:
        raise CsvError(f"{path}: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise CsvError(
                f"{path}: header lacks {', '.join(missing)} (needs {','.join(REQUIRED)})"
            )
        unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
        if unknown:
            raise CsvError(
                f"{path}: unknown column(s) {', '.join(unknown)}; allowed: "
                f"{','.join(REQUIRED + OPTIONAL)}"
            )
        reader.fieldnames = header
        runs = []
        for row in reader:
            line = reader.line_num
            cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
            for name in REQUIRED:
                if not cells.get(name):
                    raise CsvError(f"{path}:{line}: column {name!r} is empty")
            optional = {
                name: _number(path, line, name, cells[name])
                for name in ("unique_tokens", "flops", "step")
                if cells.get(name)
            }
            step = optional.get("step")
            if step is not None and not step.is_integer():
                raise CsvError(f"{path}:{line}: column 'step': {step!r} is not an integer")
            runs.append(
                Run(
                    run_id=cells.get("run_id", ""),
                    params=_number(path, line, "params", cells["params"]),
                    tokens=_number(path, line, "tokens", cells["tokens"]),
                    loss=_number(path, line, "loss", cells["loss"]),
                    unique_tokens=optional.get("unique_tokens"),
                    flops=optional.get("flops"),
                    step=None if step is None else int(step),
                )
            )
    if not runs:
        raise CsvError(f"{path}: no runs below the header")
    return runs
