"""`planner` commands for the planning queries beyond `optimal` and `inference`:
overtrain, datamix, sparsity and allocate (DESIGN.md §5); and the hardware flags and training
block every plan command shares."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from clients import formatting as fmt
from clients import task_commands
from clients.client import PlannerClient
from clients.command_base import Output, UsageError, band_text, bands_json, law_selector
from clients.results import BudgetJob, DataPool, Hardware, LawSelector, TrainingSetup

# -- plans on hardware -------------------------------------------------------------------------

# The family answering when --hyperparameter-law is not given (the server's default).
DEFAULT_STEP_LAW = "step-law-2025"
HARDWARE_HELP = (
    "--accelerators, --peak-flops and --mfu describe the training cluster: with them the plan "
    "gains a training block (Step Law learning rate and batch, steps, wall-clock and "
    "accelerator hours, cost with --price-per-hour, and Kaplan's critical-batch check, which "
    "is indicative only)."
)
# `optimal` also sizes an accelerator-hour budget with the same two flags.
ACCELERATOR_BUDGET_HELP = (
    " --peak-flops and --mfu are one accelerator's: they also turn --accelerator-hours into "
    "FLOPs (hours x 3600 x peak x MFU), so one set of flags both sizes the budget and, with "
    "--accelerators, sets the profile."
)


def step_law_selector(text: str) -> LawSelector:
    """--hyperparameter-law FAMILY[:VERSION] (version 0 or none: the current one)."""
    family, colon, version = text.partition(":")
    if not family or (colon and not version.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected FAMILY or FAMILY:VERSION")
    return LawSelector(family, version=int(version) if colon else 0)


def hardware_arguments(parser: argparse.ArgumentParser, accelerator_budget: bool = False) -> None:
    """The shared hardware flags, in a group of their own in --help."""
    group = parser.add_argument_group(
        "hardware", HARDWARE_HELP + (ACCELERATOR_BUDGET_HELP if accelerator_budget else "")
    )
    group.add_argument("--accelerators", type=int, metavar="N", help="accelerators used together")
    group.add_argument(
        "--peak-flops", type=float, metavar="F", help="peak FLOP/s of one accelerator, e.g. 9.89e14"
    )
    group.add_argument("--mfu", type=float, metavar="X", help="model FLOPs utilisation in (0, 1]")
    group.add_argument(
        "--price-per-hour", type=float, metavar="P", help="price of one accelerator-hour"
    )
    group.add_argument(
        "--batch-tokens", type=float, metavar="B", help="batch in tokens (default: the Step Law's)"
    )
    group.add_argument(
        "--hyperparameter-law",
        type=step_law_selector,
        metavar="FAMILY[:VERSION]",
        help=f"the step_law law giving learning rate and batch (default {DEFAULT_STEP_LAW})",
    )


def hardware(args: argparse.Namespace, budget_uses_accelerator: bool = False) -> Hardware | None:
    """The profile the flags give, or None. Flags that only make sense with a profile are a
    usage error without --accelerators; the values themselves are the server's to check."""
    if args.accelerators is None:
        flags = [
            ("--price-per-hour", args.price_per_hour),
            ("--batch-tokens", args.batch_tokens),
            ("--hyperparameter-law", args.hyperparameter_law),
        ]
        if not budget_uses_accelerator:
            flags += [("--peak-flops", args.peak_flops), ("--mfu", args.mfu)]
        alone = [flag for flag, value in flags if value is not None]
        if alone:
            raise UsageError(
                f"{', '.join(alone)}: the hardware profile needs --accelerators N, "
                "--peak-flops and --mfu"
            )
        return None
    if args.peak_flops is None or args.mfu is None:
        raise UsageError("--accelerators needs --peak-flops and --mfu")
    return Hardware(
        accelerators=args.accelerators,
        peak_flops_per_second=args.peak_flops,
        mfu=args.mfu,
        price_per_accelerator_hour=args.price_per_hour,
        batch_tokens=args.batch_tokens,
    )


def with_training(output: Output, training: TrainingSetup | None) -> Output:
    """A plan's output with its training block (JSON key "training"); unchanged without one."""
    if training is None:
        return output
    data, text = output
    data["training"] = asdict(training)
    return data, text + "\n" + training_text(training)


def training_text(training: TrainingSetup) -> str:
    law = training.hyperparameter_law
    rows = [
        ("learning rate", f"{training.learning_rate:.4g}"),
        ("batch", f"{fmt.number(training.batch_tokens)} tokens"),
        ("steps", f"{training.steps:,}"),
        ("wall-clock", f"{training.wall_clock_hours:.6g} hours"),
        ("accelerator-hours", f"{training.accelerator_hours:.6g}"),
    ]
    if training.cost is not None:
        rows.append(("cost", f"{training.cost:.2f}"))
    rows.append(("Step Law", f"{law.form} v{law.version} ({law.method})"))
    check = training.critical_batch
    if check is not None:
        side = "above" if check.exceeds_critical else "at or below"
        rows += [
            (
                "critical batch",
                f"{fmt.number(check.critical_batch_tokens)} tokens at loss {check.loss:.4g}; "
                f"the batch is {side} it",
            ),
            (
                "",
                f"{check.step_penalty:.3g}x the fewest steps, {check.token_penalty:.3g}x the "
                "fewest tokens",
            ),
            ("", "indicative only: Kaplan's constants are WebText2 nats with his tokenizer"),
        ]
    block = fmt.key_values(rows)
    return "training\n" + "\n".join(("  " + line).rstrip() for line in block.splitlines())


def overtrain(client: PlannerClient, args: argparse.Namespace) -> Output:
    plan = client.plan_overtraining(
        args.family,
        compute=args.compute,
        target_loss=args.target_loss,
        target_error=args.target_error,
        multiplier=args.multiplier,
        version=args.version,
        hardware=hardware(args),
        hyperparameter_law=args.hyperparameter_law,
        target_accuracy=args.target_accuracy,
    )
    data: dict[str, Any] = {
        "multiplier": plan.multiplier,
        "params": plan.params,
        "tokens": plan.tokens,
        "flops": plan.flops,
        "loss": plan.loss,
        "downstream_error": plan.downstream_error,
        "best_multiplier": plan.best_multiplier,
        "loss_penalty": plan.loss_penalty,
        "compute_ratio": plan.compute_ratio,
    }
    rows = [
        ("tokens/param (M)", f"{plan.multiplier:.4g}"),
        ("params (N)", fmt.number(plan.params)),
        ("tokens (D)", fmt.number(plan.tokens)),
        ("FLOPs", fmt.number(plan.flops)),
        ("loss", fmt.number(plan.loss)),
    ]
    if plan.downstream_error is not None:
        rows.append(("downstream error", f"{plan.downstream_error:.4f}"))
    rows += [
        ("best M at fixed C", f"{plan.best_multiplier:.4g} (only inside the fitted range)"),
        (
            "vs best M",
            f"{plan.loss_penalty:.4g}x reducible loss, {plan.compute_ratio:.4g}x compute",
        ),
        ("law", f"{plan.law.form} v{plan.law.version} ({plan.law.method})"),
    ]
    return with_training((data, fmt.key_values(rows)), plan.training)


def _json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None


def _number(where: str, value: Any) -> float:
    # bool is an int in Python; true/false are not numbers here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{where}: must be a number, got {json.dumps(value)}")
    return float(value)


def read_pools(path: str) -> tuple[list[DataPool], float | None, float | None]:
    """POOLS.json: {"a"?, "d"?, "pools": [{"name", "size", "utility", "half_life"}]}."""
    data = _json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        raise UsageError(f'{path}: expected an object with a "pools" list')
    pools = []
    for i, entry in enumerate(data["pools"]):
        where = f"{path}: pools[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: expected an object")
        observed = "observations" in entry
        required = {"name", "size"} | (set() if observed else {"utility", "half_life"})
        missing = required - set(entry)
        if missing:
            raise UsageError(f"{where}: missing {', '.join(sorted(missing))}")
        if not isinstance(entry["name"], str):
            raise UsageError(f"{where}.name: must be a string")
        pools.append(
            DataPool(
                name=entry["name"],
                size=_number(f"{where}.size", entry["size"]),
                utility=_number(f"{where}.utility", entry.get("utility", 0.0)),
                half_life=_number(f"{where}.half_life", entry.get("half_life", 0.0)),
                observations=_observations(where, entry.get("observations", [])),
            )
        )
    a = None if data.get("a") is None else _number(f"{path}: a", data["a"])
    d = None if data.get("d") is None else _number(f"{path}: d", data["d"])
    return pools, a, d


def _observations(where: str, entries: Any) -> list[tuple[float, float]]:
    if not isinstance(entries, list):
        raise UsageError(f"{where}.observations: expected a list of {{samples, error}}")
    out = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or {"samples", "error"} - set(entry):
            raise UsageError(f"{where}.observations[{k}]: expected {{samples, error}}")
        out.append(
            (
                _number(f"{where}.observations[{k}].samples", entry["samples"]),
                _number(f"{where}.observations[{k}].error", entry["error"]),
            )
        )
    return out


# Budgets drawn by --plot: this many, log-spaced over this factor either side of the request.
PLOT_POINTS, PLOT_SPAN = 61, 1e3


def datamix(client: PlannerClient, args: argparse.Namespace) -> Output:
    pools, a, d = read_pools(args.pools)
    plan = client.plan_data_mix(pools, args.compute, a, d, args.compare_at)
    if args.plot is not None:
        _plot_data_mix(client, args, pools, a, d)
    data: dict[str, Any] = {
        "pools": [{"name": p.name, "samples": p.samples, "epochs": p.epochs} for p in plan.pools],
        "predicted_error": plan.predicted_error,
        "candidates": [
            {"pools": c.pools, "predicted_error": c.predicted_error}
            | ({"compare_errors": c.compare_errors} if args.compare_at else {})
            for c in plan.candidates
        ],
        "solver": plan.solver,
    }
    if args.plot is not None:
        data["plot"] = args.plot
    if plan.fitted:
        data["fitted"] = [
            {"name": f.name, "utility": f.utility, "half_life": f.half_life} for f in plan.fitted
        ]
    budgets = [args.compute, *(args.compare_at or [])]
    errors = [[c.predicted_error, *c.compare_errors] for c in plan.candidates]
    # The best candidate at each budget (column).
    best = [int(np.argmin([row[i] for row in errors])) for i in range(len(budgets))]
    rows = [
        [
            f"top {k + 1}",
            ", ".join(candidate.pools),
            *(f"{e:.5g}{' *' if best[i] == k else ''}" for i, e in enumerate(errors[k])),
        ]
        for k, candidate in enumerate(plan.candidates)
    ]
    table = fmt.table(["MIX", "POOLS", *(f"ERR @ {fmt.number(b)}" for b in budgets)], rows)
    chosen = ", ".join(f"{p.name} ({p.epochs:.3g} epochs)" for p in plan.pools)
    text = "\n".join(
        [
            f"train on: {chosen}",
            f"predicted error {plan.predicted_error:.5g} at {fmt.number(args.compute)} samples",
            table,
            "* best at that budget; solver: " + plan.solver,
        ]
        + [
            f"fitted {f.name}: utility {f.utility:.4g}, half-life {f.half_life:.3g} epochs"
            for f in plan.fitted
        ]
    )
    return data, text


def _plot_data_mix(
    client: PlannerClient,
    args: argparse.Namespace,
    pools: list[DataPool],
    a: float | None,
    d: float | None,
) -> None:
    from clients import plots

    budgets = list(
        np.logspace(
            np.log10(args.compute / PLOT_SPAN), np.log10(args.compute * PLOT_SPAN), PLOT_POINTS
        )
    )
    # One sample is the least a budget can be; the sweep never goes below it.
    budgets = [float(max(b, 1.0)) for b in budgets]
    sweep = client.plan_data_mix(pools, args.compute, a, d, budgets)
    curves = [(c.pools, c.compare_errors) for c in sweep.candidates]
    try:
        plots.data_mix_plot(budgets, curves, args.compute, Path(args.plot))
    except RuntimeError as error:
        raise UsageError(str(error)) from None


def sparsity(client: PlannerClient, args: argparse.Namespace) -> Output:
    plan = client.plan_sparsity(
        args.family,
        args.compute,
        final_sparsity=args.final_sparsity,
        final_params=args.final_params,
        prune_start=args.prune_start,
        prune_end=args.prune_end,
        prunable_fraction=args.prunable_fraction,
        dense_flops=args.dense_flops,
        form=args.form,
        version=args.version,
        hardware=hardware(args),
        hyperparameter_law=args.hyperparameter_law,
    )
    dense = plan.dense_same_size
    data: dict[str, Any] = {
        "dense_params": plan.dense_params,
        "average_params": plan.average_params,
        "final_params": plan.final_params,
        "final_sparsity": plan.final_sparsity,
        "tokens": plan.tokens,
        "loss": plan.loss,
        "flops": plan.flops,
        "schedule": [{"fraction": f, "sparsity": s} for f, s in plan.schedule],
        "dense_same_size": {"params": dense.params, "tokens": dense.tokens, "loss": dense.loss},
        "binding": plan.binding,
        "notes": plan.notes,
        "solver": plan.solver,
        "intervals": bands_json(plan.intervals),
    }

    def band(name: str) -> str:
        return band_text(plan.intervals, name)

    rows = [
        ("dense start (N)", fmt.number(plan.dense_params) + band("dense_params")),
        ("average (N_avg)", fmt.number(plan.average_params) + band("average_params")),
        ("deployed (N_final)", fmt.number(plan.final_params) + band("final_params")),
        ("final sparsity", f"{plan.final_sparsity:.4g}"),
        ("tokens (D)", fmt.number(plan.tokens) + band("tokens")),
        ("loss", fmt.number(plan.loss) + band("loss")),
        ("FLOPs", fmt.number(plan.flops)),
        (
            "dense same size",
            f"N {fmt.number(dense.params)}, D {fmt.number(dense.tokens)}, "
            f"loss {fmt.number(dense.loss)} ({dense.loss - plan.loss:+.4g})",
        ),
        ("binding", ", ".join(plan.binding)),
        ("solver", plan.solver),
        ("law", f"{plan.law.form} v{plan.law.version} ({plan.law.method})"),
    ]
    schedule = "  ".join(f"{f:.1f}:{s:.3f}" for f, s in plan.schedule)
    lines = [fmt.key_values(rows), f"schedule (fraction:sparsity)  {schedule}"]
    lines += [f"note: {note}" for note in plan.notes]
    # Its training is the dense start's; time and cost count the plan's (sparse) FLOPs.
    return with_training((data, "\n".join(lines)), plan.training)


NUMBER_KEYS = {"weight", "min_flops", "max_flops", "max_params", "max_tokens"}
JOB_KEYS = {"name", "family", "form", "version"} | NUMBER_KEYS


def read_jobs(path: str) -> list[BudgetJob]:
    """JOBS.json: {"jobs": [{"name", "family", "weight"?, "min_flops"?, "max_flops"?,
    "max_params"?, "max_tokens"?, "form"?, "version"?}]}."""
    data = _json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise UsageError(f'{path}: expected an object with a "jobs" list')
    jobs = []
    for i, entry in enumerate(data["jobs"]):
        where = f"{path}: jobs[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: expected an object")
        unknown = set(entry) - JOB_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        for key in ("name", "family"):
            if not isinstance(entry.get(key), str):
                raise UsageError(f"{where}.{key}: must be a string")
        numbers = {
            key: _number(f"{where}.{key}", entry[key])
            for key in NUMBER_KEYS
            if entry.get(key) is not None
        }
        form = entry.get("form", "")
        version = entry.get("version", 0)
        if not isinstance(form, str):
            raise UsageError(f"{where}.form: must be a string")
        if isinstance(version, bool) or not isinstance(version, int):
            raise UsageError(f"{where}.version: must be an integer")
        jobs.append(
            BudgetJob(
                name=entry["name"],
                family=entry["family"],
                weight=numbers.get("weight"),
                min_flops=numbers.get("min_flops"),
                max_flops=numbers.get("max_flops"),
                max_params=numbers.get("max_params"),
                max_tokens=numbers.get("max_tokens"),
                form=form,
                version=version,
            )
        )
    return jobs


def allocate(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.allocate_budget(read_jobs(args.jobs), args.compute)
    data: dict[str, Any] = {
        "jobs": [
            {
                "name": j.name,
                "flops": j.flops,
                "params": j.params,
                "tokens": j.tokens,
                "loss": j.loss,
                "binding": j.binding,
                "marginal_value": j.marginal_value,
                "intervals": bands_json(j.intervals),
            }
            for j in result.jobs
        ],
        "marginal_value": result.marginal_value,
        "objective": result.objective,
        "budget_binding": result.budget_binding,
        "solver": result.solver,
    }
    rows = [
        [
            j.name,
            fmt.number(j.flops),
            f"{j.flops / args.compute:.1%}",
            fmt.number(j.params),
            fmt.number(j.tokens),
            f"{j.loss:.5g}",
            f"{j.marginal_value:.4g}",
            ", ".join(j.binding) or "-",
        ]
        for j in result.jobs
    ]
    table = fmt.table(
        ["JOB", "FLOPS", "SHARE", "PARAMS", "TOKENS", "LOSS", "MARGINAL", "BINDING"], rows
    )
    spare = "" if result.budget_binding else " (every job at its max_flops; budget left over)"
    text = "\n".join(
        [
            table,
            f"marginal value of compute {result.marginal_value:.4g} weighted nats/FLOP{spare}",
            f"weighted loss {result.objective:.6g}; solver: {result.solver}",
        ]
    )
    return data, text


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def register(commands: Any) -> None:
    """Add these commands to the `planner` subparsers."""
    over = commands.add_parser(
        "overtrain", help="over-training law: loss, compute or best tokens-per-param (Gadre)"
    )
    over.add_argument("family")
    goal = over.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, help="training FLOPs")
    goal.add_argument("--target-loss", type=float, help="loss to reach (nats/token)")
    goal.add_argument("--target-error", type=float, help="downstream top-1 error to reach")
    goal.add_argument(
        "--target-accuracy",
        type=task_commands.parse_target_accuracy,
        metavar="TASK=ACCURACY",
        help="accuracy to reach on a task, through the family's task law (planner task fit): "
        "least compute at --multiplier, else at the task law's compute-optimal ratio; the loss "
        "shown is then the task's loss",
    )
    over.add_argument(
        "--multiplier", type=float, help="tokens per parameter M (default: the law's best)"
    )
    over.add_argument("--version", type=int, default=0, help="law version (default: current)")
    hardware_arguments(over)
    over.set_defaults(func=overtrain)

    mix = commands.add_parser(
        "datamix", help="which data pools to train on for a sample budget (Goyal)"
    )
    mix.add_argument(
        "--pools",
        required=True,
        help='JSON file: {"a", "d", "pools": [{"name", "size", "utility", "half_life"}]}; a '
        'pool may give "observations": [{"samples", "error"}] instead of utility and half_life',
    )
    mix.add_argument("--compute", type=_finite, required=True, help="budget in samples seen")
    mix.add_argument(
        "--compare-at", type=_finite, nargs="+", metavar="SAMPLES", help="other budgets to show"
    )
    mix.add_argument(
        "--plot", metavar="FILE.png", help="also draw every mix's error against the budget"
    )
    mix.set_defaults(func=datamix)

    sparse = commands.add_parser(
        "sparsity", help="sparse pre-training plan: dense start, pruning schedule (Jin)"
    )
    sparse.add_argument("family")
    sparse.add_argument("--compute", type=float, required=True, help="training FLOPs")
    target = sparse.add_mutually_exclusive_group(required=True)
    target.add_argument("--final-sparsity", type=float, help="fraction pruned at the end, [0, 1)")
    target.add_argument("--final-params", type=float, help="deployed parameter count")
    sparse.add_argument("--prune-start", type=float, help="fraction of training (default 0.25)")
    sparse.add_argument("--prune-end", type=float, help="fraction of training (default 0.75)")
    sparse.add_argument(
        "--prunable-fraction", type=float, help="share of parameters that can be pruned"
    )
    sparse.add_argument(
        "--dense-flops",
        action="store_true",
        help="sparse FLOPs are not realised: compute counts the dense size",
    )
    law_selector(sparse)
    hardware_arguments(sparse)
    sparse.set_defaults(func=sparsity)

    split = commands.add_parser(
        "allocate", help="split one compute budget across jobs (weighted sum of losses)"
    )
    split.add_argument(
        "--jobs",
        required=True,
        help='JSON file: {"jobs": [{"name", "family", "weight", "min_flops"?, "max_flops"?}]}',
    )
    split.add_argument("--compute", type=_finite, required=True, help="total FLOPs")
    split.set_defaults(func=allocate)
