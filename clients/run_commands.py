"""`planner runs add|list|delete`: a family's training runs and their checkpoints."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clients import formatting as fmt
from clients.client import PlannerClient
from clients.command_base import Output, UsageError
from clients.csv_runs import read_runs
from clients.results import Run

CSV_HEADER = (
    "params,tokens,loss[,unique_tokens,flops,step,run_id,weight,lr,batch_tokens,metric:<name>...]"
)
# The CLI's page when none is asked for: a screenful of rows, not the server's 1000.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000
# The METRICS cell lists name=value pairs while every row's fit in this many characters;
# beyond, a page of (say) a dozen task metrics per row would push each row over many lines, so
# every row shows its count instead and --json has the values.
MAX_METRICS_TEXT = 48


def runs_add(client: PlannerClient, args: argparse.Namespace) -> Output:
    runs = read_runs(Path(args.file))
    result = client.add_runs(args.family, runs)
    data = {"added": result.added, "unchanged": result.unchanged, "runs": result.family.run_count}
    text = (
        f"added {result.added} rows to {args.family} ({result.unchanged} already stored); "
        f"{result.family.run_count} in all"
    )
    return data, text


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_PAGE_SIZE}, got {value}")
    return value


def _metric_pairs(run: Run) -> str:
    return " ".join(f"{name}={fmt.number(value)}" for name, value in sorted(run.metrics.items()))


def _metrics_cells(runs: list[Run]) -> tuple[list[str], bool]:
    """Each row's METRICS cell, and whether they are counts (the pairs would not fit)."""
    pairs = [_metric_pairs(run) for run in runs]
    if all(len(text) <= MAX_METRICS_TEXT for text in pairs):
        return [text or "-" for text in pairs], False
    return [str(len(run.metrics)) if run.metrics else "-" for run in runs], True


def _run_row(run: Run, metrics: str) -> list[str]:
    return [
        run.run_id,
        "-" if run.step is None else str(run.step),
        fmt.number(run.params),
        fmt.number(run.tokens),
        fmt.number(run.loss),
        fmt.number(run.unique_tokens),
        fmt.number(run.flops),
        fmt.number(run.weight),
        fmt.number(run.lr),
        fmt.number(run.batch_tokens),
        metrics,
    ]


def runs_list(client: PlannerClient, args: argparse.Namespace) -> Output:
    if args.all and args.page_token:
        raise UsageError("--all lists from the first page; give it or --page-token, not both")
    if args.all:
        runs, token = list(client.list_runs(args.family, args.page_size)), ""
    else:
        page = client.list_runs_page(args.family, args.page_size, args.page_token)
        runs, token = page.runs, page.next_page_token
    data: dict[str, Any] = {"runs": [asdict(r) for r in runs], "next_page_token": token}
    headers = [
        "RUN_ID", "STEP", "PARAMS", "TOKENS", "LOSS", "UNIQUE_TOKENS", "FLOPS", "WEIGHT", "LR",
        "BATCH_TOKENS", "METRICS",
    ]  # fmt: skip
    metrics, counted = _metrics_cells(runs)
    lines = [fmt.table(headers, [_run_row(r, m) for r, m in zip(runs, metrics, strict=True)])]
    if counted:
        lines.append("METRICS: how many each row has; --json lists their names and values")
    if token:
        lines.append(
            f"{len(runs)} rows shown; more: planner runs list {args.family} "
            f"--page-size {args.page_size} --page-token {token}  (or --all)"
        )
    else:
        lines.append(f"{len(runs)} rows")
    return data, "\n".join(lines)


def runs_delete(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.delete_runs(args.family, args.run_ids)
    data = {"deleted": result.deleted, "runs": result.family.run_count}
    named = len(set(args.run_ids))
    text = (
        f"deleted {result.deleted} rows (every checkpoint of {named} "
        f"run{'' if named == 1 else 's'}) from {args.family}; {result.family.run_count} left"
    )
    return data, text


def register(commands: Any) -> None:
    """Add `runs` and its actions to the `planner` subparsers."""
    runs = commands.add_parser("runs", help="training runs of a family")
    run_commands = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = run_commands.add_parser(
        "add",
        help=f"add runs from CSV ({CSV_HEADER}); rows sharing a run_id with different steps "
        "are checkpoints of one run",
    )
    add.add_argument("family")
    add.add_argument("file")
    add.set_defaults(func=runs_add)
    listing = run_commands.add_parser("list", help="the family's runs in insertion order, paged")
    listing.add_argument("family")
    listing.add_argument(
        "--page-size",
        type=_page_size,
        default=PAGE_SIZE,
        help=f"rows per page (default {PAGE_SIZE})",
    )
    listing.add_argument("--page-token", default="", help="from a previous page, to continue")
    listing.add_argument("--all", action="store_true", help="every page")
    listing.set_defaults(func=runs_list)
    delete = run_commands.add_parser(
        "delete", help="delete runs by run_id, every checkpoint of each (all or none)"
    )
    delete.add_argument("family")
    delete.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    delete.set_defaults(func=runs_delete)
