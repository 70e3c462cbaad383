"""How laws, fits and backtests read on the terminal and in --json: shared by `planner fit`,
`planner backtest`, `planner laws` and `planner operations`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from clients import formatting as fmt
from clients.command_base import Output, notice
from clients.results import AutoChoice, Backtest, Law

# Parameters first in this order, the rest after them by name.
PARAMETER_ORDER = ("E", "A", "B", "alpha", "beta", "a", "b", "eta", "r_d_star", "r_n_star")


def _ordered(parameters: dict[str, float]) -> list[tuple[str, float]]:
    rank = {name: i for i, name in enumerate(PARAMETER_ORDER)}
    return sorted(parameters.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def parameter_table(law: Law) -> str:
    rows = [
        [name, fmt.number(value), *(fmt.number(v) for v in law.intervals.get(name, (None, None)))]
        for name, value in _ordered(law.parameters)
    ]
    return fmt.table(["PARAMETER", "VALUE", "95% LOW", "95% HIGH"], rows)


def auto_json(auto: AutoChoice | None) -> dict[str, Any] | None:
    return None if auto is None else asdict(auto)


def auto_text(auto: AutoChoice) -> str:
    rows = [
        [
            c.candidate + (" *" if c.candidate == auto.chosen else ""),
            "-" if c.failure else f"{c.mean_abs_relative_error:.3%}",
            "-" if c.failure else f"{c.max_abs_relative_error:.3%}",
            c.failure,
        ]
        for c in auto.candidates
    ]
    head = (
        f"method auto chose {auto.chosen} over {auto.folds} folds (error of the held-out "
        "larger runs' final loss; * chosen)"
    )
    if auto.note:  # no backtest was possible
        return f"method auto chose {auto.chosen} without a backtest: {auto.note}"
    table = fmt.table(["CANDIDATE", "MEAN |REL ERR|", "MAX |REL ERR|", "NOTE"], rows)
    return f"{head}\n{table}"


def options_text(law: Law) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(law.options.items())) or "-"


def diagnostics_text(law: Law) -> str:
    d = law.diagnostics
    text = (
        f"RMSE on log loss {fmt.number(d.get('rmse_log_loss'))}, max "
        f"{fmt.number(d.get('max_abs_log_loss'))}, residual sd "
        f"{fmt.number(d.get('residual_sd_log_loss'))}"
    )
    if d.get("on_bound"):
        text += f"; on a bound: {', '.join(d['on_bound'])}"
    return text


def promote_command(law: Law) -> str:
    return f"planner laws promote {law.family} --form {law.form} --version {law.version}"


def rows_text(law: Law) -> str:
    d = law.diagnostics
    rows, runs = d.get("runs"), d.get("training_runs")
    if rows is None:
        return f"{len(law.run_ids)} rows"
    return f"{rows} rows of {runs} training runs" if runs and runs != rows else f"{rows} runs"


def law_json(law: Law) -> dict[str, Any]:
    """Everything `laws show --json` prints about a version."""
    return {
        "family": law.family,
        "form": law.form,
        "version": law.version,
        "current": law.current,
        "method": law.method,
        "citation": law.citation,
        "note": law.note,
        "create_time": law.create_time,
        "params": law.parameters,
        "intervals": {k: list(v) for k, v in law.intervals.items()},
        "ensemble_size": law.ensemble_size,
        "options": law.options,
        "diagnostics": law.diagnostics,
        "auto": auto_json(law.auto),
        "run_count": law.run_count,
        "run_ids": law.run_ids,
    }


class ProgressBar:
    """A one-line progress bar on stderr: `bootstrap [#####-----]  100/200`."""

    WIDTH = 30

    def __init__(self) -> None:
        self.open = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        end = "\n" if stage == "bootstrap" and done >= total else ""
        print(f"\r{stage:>9} [{bar}] {done:>4}/{total}", end=end, file=sys.stderr, flush=True)
        self.open = not end

    def finish(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def fit_output(args: argparse.Namespace, law: Law) -> Output:
    """What `planner fit` prints for the stored law (warnings and notes as notices)."""
    data = {
        "version": law.version,
        "form": law.form,
        "method": law.method,
        "current": law.current,
        "params": law.parameters,
        "intervals": {k: list(v) for k, v in law.intervals.items()},
        "diagnostics": law.diagnostics,
        "options": law.options,
        "auto": auto_json(law.auto),
    }
    failed = law.diagnostics.get("failed_resamples") or 0
    lines = [
        f"{law.family}: {law.form} v{law.version} by {law.method}"
        + (" (method auto)" if law.auto else "")
        + f" on {rows_text(law)}, {law.ensemble_size} bootstrap fits"
        + (f" ({failed} resamples failed)" if failed else "")
        + (f"; Chinchilla part: {law.options['base']}" if "base" in law.options else ""),
        parameter_table(law),
        diagnostics_text(law),
        f"options: {options_text(law)}",
    ]
    if law.auto is not None:
        lines.append(auto_text(law.auto))
    for warning in law.warnings:
        notice(args, f"warning: {warning}")
    if law.current:
        lines.append(f"v{law.version} is now the current {law.form} law of {law.family}")
    else:
        hint = (
            f"v{law.version} was stored but NOT made current ({_why_not_current(args, law)}); "
            "queries that name no version do not use it. To make it current: "
            f"{promote_command(law)}"
        )
        lines.append(hint)
        if args.json:
            notice(args, f"note: {hint}")
    return data, "\n".join(lines)


def _why_not_current(args: argparse.Namespace, law: Law) -> str:
    # `operations watch` has no --make-current: a fit without warnings left aside was asked to.
    asked = getattr(args, "make_current", None)
    if asked is False or (asked is None and not law.warnings):
        return "--no-make-current"
    return "the fit has warnings"


def backtest_output(result: Backtest, family: str, train_below: float | None) -> Output:
    """What `planner backtest` prints (`train_below` None: the cut is not known)."""
    data = {
        "train_runs": result.train_runs,
        "test_runs": result.test_runs,
        "methods": [
            {
                "method": m.method,
                "chosen": m.chosen,
                "params": m.parameters,
                "failure": m.failure,
                "mean_abs_relative_error": m.mean_abs_relative_error if not m.failure else None,
                "max_abs_relative_error": m.max_abs_relative_error if not m.failure else None,
                "runs": [asdict(r) for r in m.runs],
            }
            for m in result.methods
        ],
    }
    summary = fmt.table(
        ["METHOD", "MEAN |REL ERR|", "MAX |REL ERR|", "NOTE"],
        [
            [
                m.method + (f" (chose {m.chosen})" if m.chosen else ""),
                "-" if m.failure else f"{m.mean_abs_relative_error:.3%}",
                "-" if m.failure else f"{m.max_abs_relative_error:.3%}",
                m.failure,
            ]
            for m in result.methods
        ],
    )
    scored = [m for m in result.methods if not m.failure]
    runs = scored[0].runs if scored else []
    detail = fmt.table(
        ["RUN", "FLOPS", "OBSERVED", *(f"{m.method.upper()} PRED" for m in scored)],
        [
            [
                run.run_id,
                fmt.number(run.flops),
                fmt.number(run.observed_loss),
                *(fmt.number(m.runs[i].predicted_loss) for m in scored),
            ]
            for i, run in enumerate(runs)
        ],
    )
    cut = "the cut" if train_below is None else f"{train_below:g} FLOPs"
    head = (
        f"{family}: fitted on {result.train_runs} runs below {cut}, "
        f"predicted {result.test_runs} above"
    )
    return data, "\n\n".join([head, summary, detail])
