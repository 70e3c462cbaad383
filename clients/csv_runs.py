"""Read training runs from CSV: header
params,tokens,loss[,unique_tokens,flops,step,run_id,weight,lr,batch_tokens,metric:<name>...].

Rows sharing a run_id with different steps are checkpoints of one training run (tokens: seen up
to that step). Within a file, (run_id, step) must not repeat, and the checkpoints of one run
must share its parameter count. `weight` is the row's relative weight in fits (empty: 1).
`lr` is the learning rate at the checkpoint's step (a finished run: its peak learning rate) and
`batch_tokens` the batch size in tokens: the loss-curve laws (multi_power, lr_annealing) are
fitted to checkpoints with step and lr, the Step Law to finished runs with lr and batch_tokens.
Each `metric:<name>` column is a named metric of the rows (e.g. `metric:mmlu_bpb`, a task's loss
at the checkpoint); an empty cell: not measured for that row.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import TextIO

from clients.results import Run

REQUIRED = ("params", "tokens", "loss")
OPTIONAL = ("unique_tokens", "flops", "step", "run_id", "weight", "lr", "batch_tokens")
METRIC_PREFIX = "metric:"
# The service's limits on Run.metrics (proto/planner/v1/planner.proto), checked here so that a
# bad header is named as a column rather than as a field of the first row sent.
METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
MAX_METRICS = 64


class CsvError(ValueError):
    """The file cannot be read as runs; the message names the line and column."""


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CsvError(f"{path}:{line}: column {column!r}: {text!r} is not a number") from None


def _metric(path: Path, line: int, column: str, text: str) -> float:
    value = _number(path, line, column, text)
    # float() takes "nan" and "inf"; a metric is a measurement, and the service refuses them.
    if not math.isfinite(value):
        raise CsvError(f"{path}:{line}: column {column!r}: {text!r} is not a finite number")
    return value


def _metric_columns(path: Path, header: list[str]) -> dict[str, str]:
    """Metric name by `metric:<name>` column, in header order."""
    columns = {c: c.removeprefix(METRIC_PREFIX) for c in header if c.startswith(METRIC_PREFIX)}
    for column, name in columns.items():
        if not METRIC_NAME.fullmatch(name):
            raise CsvError(
                f"{path}: column {column!r}: {name!r} is not a metric name "
                "(1-64 characters of A-Z, a-z, 0-9, _ . : / -)"
            )
    if len(columns) > MAX_METRICS:
        raise CsvError(f"{path}: {len(columns)} metric: columns; at most {MAX_METRICS}")
    return columns


MAX_STEP = 2**63 - 1


def read_runs(path: Path) -> list[Run]:
    """Every row as a Run; unknown columns are an error, empty optional cells are unset."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise CsvError(f"{path}: {error.strerror}") from None
    try:
        with handle:
            return _parse(path, handle)
    except UnicodeDecodeError as error:
        raise CsvError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise CsvError(f"{path}: malformed CSV: {error}") from None


def _parse(path: Path, handle: TextIO) -> list[Run]:
    reader = csv.DictReader(handle)
    header = [name.strip() for name in reader.fieldnames or []]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CsvError(f"{path}: column(s) {', '.join(repeated)} appear more than once")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise CsvError(f"{path}: header lacks {', '.join(missing)} (needs {','.join(REQUIRED)})")
    metric_columns = _metric_columns(path, header)
    unknown = [n for n in header if n not in REQUIRED + OPTIONAL and n not in metric_columns]
    if unknown:
        raise CsvError(
            f"{path}: unknown column(s) {', '.join(unknown)}; allowed: "
            f"{','.join(REQUIRED + OPTIONAL)},{METRIC_PREFIX}<name>"
        )
    reader.fieldnames = header
    runs = []
    # (run_id, step) -> line, and run_id -> (params, line) of its first row.
    keys: dict[tuple[str, int | None], int] = {}
    sizes: dict[str, tuple[float, int]] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            raise CsvError(f"{path}:{line}: more cells than the header has columns")
        cells = {k: (v or "").strip() for k, v in row.items()}
        for name in REQUIRED:
            if not cells.get(name):
                raise CsvError(f"{path}:{line}: column {name!r} is empty")
        optional = {
            name: _number(path, line, name, cells[name])
            for name in ("unique_tokens", "flops", "step", "weight", "lr", "batch_tokens")
            if cells.get(name)
        }
        step = optional.get("step")
        if step is not None and not (step.is_integer() and 0 <= step <= MAX_STEP):
            raise CsvError(f"{path}:{line}: column 'step': {step!r} is not a step count")
        run = Run(
            run_id=cells.get("run_id", ""),
            params=_number(path, line, "params", cells["params"]),
            tokens=_number(path, line, "tokens", cells["tokens"]),
            loss=_number(path, line, "loss", cells["loss"]),
            unique_tokens=optional.get("unique_tokens"),
            flops=optional.get("flops"),
            step=None if step is None else int(step),
            weight=optional.get("weight"),
            lr=optional.get("lr"),
            batch_tokens=optional.get("batch_tokens"),
            metrics={
                name: _metric(path, line, column, cells[column])
                for column, name in metric_columns.items()
                if cells[column]
            },
        )
        if run.run_id:
            _check_checkpoint(path, line, run, keys, sizes)
        runs.append(run)
    if not runs:
        raise CsvError(f"{path}: no runs below the header")
    return runs


def _check_checkpoint(
    path: Path,
    line: int,
    run: Run,
    keys: dict[tuple[str, int | None], int],
    sizes: dict[str, tuple[float, int]],
) -> None:
    """A row of a named run: its (run_id, step) is new, and its params are the run's."""
    key = (run.run_id, run.step)
    if key in keys:
        at = "" if run.step is None else f" at step {run.step}"
        raise CsvError(
            f"{path}:{line}: run_id {run.run_id!r}{at} repeats line {keys[key]}; rows sharing "
            "a run_id are checkpoints of one run and need different steps"
        )
    keys[key] = line
    params, first = sizes.setdefault(run.run_id, (run.params, line))
    if params != run.params:
        raise CsvError(
            f"{path}:{line}: run_id {run.run_id!r} has params {run.params:g} here but "
            f"{params:g} on line {first}; checkpoints of one run share its parameter count"
        )
