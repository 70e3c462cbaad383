"""`planner task fit|predict|plot`: downstream-task accuracy through a family's task laws
(form "task_link:<task>"; the OLMo ladder's two steps, planner.tasks)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from clients import formatting as fmt
from clients.client import PlannerClient
from clients.command_base import Output, UsageError
from clients.law_output import ProgressBar, fit_output

TASK_FORM_PREFIX = "task_link:"
# The plot's compute axis: from the family's smallest run to past this (13B-5T is ~4e23).
PLOT_MAX_FLOPS = 1e25
PLOT_POINTS = 40


def parse_target_accuracy(spec: str) -> tuple[str, float]:
    """TASK=ACC (a fraction, e.g. mmlu_avg_test=0.6) for `optimal --target-accuracy`."""
    task, sep, value = spec.partition("=")
    try:
        accuracy = float(value)
    except ValueError:
        accuracy = math.nan
    if not sep or not task or not math.isfinite(accuracy):
        raise argparse.ArgumentTypeError(f"expected TASK=ACCURACY (e.g. mmlu=0.6), got {spec!r}")
    return task, accuracy


def fit(client: PlannerClient, args: argparse.Namespace) -> Output:
    bar = None if args.json else ProgressBar()
    try:
        law = client.fit_task_law(
            args.family,
            args.task,
            args.loss_metric or f"{args.task}_bpb",
            args.accuracy_metric or f"{args.task}_acc",
            chance=args.chance,
            skip_fraction=args.skip_fraction,
            window=args.window,
            bootstrap=args.bootstrap,
            seed=args.seed,
            on_progress=bar,
        )
    finally:
        if bar is not None:
            bar.finish()
    return fit_output(args, law)


def predict(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.predict_task(args.family, args.task, args.params, args.tokens, args.version)
    band = ""
    if result.interval is not None:
        band = f"  (95% band: {result.interval[0]:.4f} - {result.interval[1]:.4f})"
    lines = [
        f"accuracy {result.accuracy:.4f}{band}  task loss {fmt.number(result.task_loss)}  "
        f"[{args.family}, {result.law.form} v{result.law.version}]",
        f"link range: {result.floor:.4f} (floor) to {result.ceiling:.4f} (ceiling)",
    ]
    if result.noisy:
        lines.append(
            "noisy: this task's checkpoints vary more than the family's other tasks'; its "
            "predictions are less reliable"
        )
    data = {
        "accuracy": result.accuracy,
        "task_loss": result.task_loss,
        "interval": list(result.interval) if result.interval else None,
        "floor": result.floor,
        "ceiling": result.ceiling,
        "noisy": result.noisy,
        "law": {"form": result.law.form, "version": result.law.version},
    }
    return data, "\n".join(lines)


def optimal_path(parameters: dict[str, float], flops: np.ndarray, k: float) -> np.ndarray:
    """N*(C) of the step-1 law: G (C/k)^(beta/(alpha+beta)), G = (alpha A/(beta B))^(1/(a+b))."""
    alpha, beta = parameters["alpha"], parameters["beta"]
    g = (alpha * parameters["A"] / (beta * parameters["B"])) ** (1 / (alpha + beta))
    return np.asarray(g * (flops / k) ** (beta / (alpha + beta)))


def plot(client: PlannerClient, args: argparse.Namespace) -> Output:
    from clients.plots import task_accuracy_plot

    form = TASK_FORM_PREFIX + args.task
    law = client.get_law(args.family, form, args.version)
    family = client.get_family(args.family)
    k = family.flops_per_param_token
    metric = law.options.get("accuracy_metric", f"{args.task}_acc")
    observed = [
        (r.flops if r.flops is not None else k * r.params * r.tokens, r.metrics[metric])
        for r in client.list_runs(args.family)
        if metric in r.metrics
    ]
    if not observed:
        raise UsageError(f"no run of {args.family} has the metric {metric!r} to plot")
    low = min(c for c, _ in observed)
    flops = np.geomspace(low, max(PLOT_MAX_FLOPS, 10 * low), PLOT_POINTS)
    params = optimal_path(law.parameters, flops, k)
    predictions = [
        client.predict_task(args.family, args.task, float(n), float(c / (k * n)), law.version)
        for c, n in zip(flops, params, strict=True)
    ]
    try:
        out = task_accuracy_plot(
            Path(args.out),
            f"{args.family} — {form} v{law.version}",
            flops,
            predictions,
            observed,
        )
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    return {"out": str(out), "task": args.task, "version": law.version}, f"wrote {out}"


def _task_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family")
    parser.add_argument("--task", required=True, help="the task (its law: task_link:<task>)")


def register(commands: Any) -> None:
    """Add `task` (fit, predict, plot) to the `planner` subparsers."""
    task = commands.add_parser("task", help="downstream-task accuracy: fit, predict, plot")
    actions = task.add_subparsers(dest="action", required=True, metavar="ACTION")

    fitting = actions.add_parser(
        "fit", help="fit a task law to the runs' metrics (task loss of N, D; sigmoid link)"
    )
    _task_argument(fitting)
    fitting.add_argument("--loss-metric", help="run metric of the task loss (default TASK_bpb)")
    fitting.add_argument(
        "--accuracy-metric", help="run metric of the accuracy, a fraction (default TASK_acc)"
    )
    fitting.add_argument("--chance", type=float, help="random-guess accuracy (default 0.25)")
    fitting.add_argument(
        "--skip-fraction", type=float, help="each run's early checkpoints step 2 skips (0.1)"
    )
    fitting.add_argument("--window", type=int, help="moving average of step 2, checkpoints (5)")
    fitting.add_argument("--bootstrap", type=int, help="resamples of the runs (default 200)")
    fitting.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    fitting.set_defaults(func=fit)

    pred = actions.add_parser("predict", help="predicted accuracy of N params on D tokens")
    _task_argument(pred)
    pred.add_argument("--params", type=float, required=True, help="parameters N")
    pred.add_argument("--tokens", type=float, required=True, help="training tokens D")
    pred.add_argument("--version", type=int, default=0, help="law version (default: current)")
    pred.set_defaults(func=predict)

    picture = actions.add_parser(
        "plot", help="accuracy vs compute on the compute-optimal path, band and checkpoints (PNG)"
    )
    _task_argument(picture)
    picture.add_argument("out", help="PNG file to write")
    picture.add_argument("--version", type=int, default=0, help="law version (default: current)")
    picture.set_defaults(func=plot)
