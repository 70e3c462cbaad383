"""`planner`: the command line of the compute-budget planner (contract: DESIGN.md §5).

    planner [--target HOST:PORT] [--token T] [--json] COMMAND ...

With --json exactly one JSON object goes to stdout (numbers in SI units); errors exit non-zero
with the server's message on stderr (and, with --json, an {"error": ...} object on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clients import formatting as fmt
from clients import planning_commands
from clients.client import PlannerClient, PlannerClientError
from clients.command_base import Output, UsageError, band_text, bands_json, law_selector
from clients.csv_runs import CsvError, read_runs
from clients.results import ComputeOptimalPlan, Family


def _laws_json(family: Family) -> list[dict[str, Any]]:
    return [{"form": law.form, "version": law.version, "method": law.method} for law in family.laws]


def _laws_text(family: Family) -> str:
    return ", ".join(f"{law.form} v{law.version} ({law.method})" for law in family.laws) or "-"


def _family_output(family: Family) -> Output:
    data = family.as_dict()
    data["laws"] = _laws_json(family)
    text = fmt.key_values(
        [
            ("name", family.name),
            ("description", family.description or "-"),
            ("params counted", family.param_convention),
            ("FLOPs/param/token", fmt.number(family.flops_per_param_token)),
            ("runs", str(family.run_count)),
            ("laws", _laws_text(family)),
            ("revision", str(family.revision)),
            ("updated", family.update_time),
        ]
    )
    return data, text


def families_list(client: PlannerClient, _args: argparse.Namespace) -> Output:
    families = list(client.list_families())
    data = {
        "families": [
            {"name": f.name, "description": f.description, "laws": _laws_json(f)} for f in families
        ]
    }
    rows = [[f.name, str(f.run_count), _laws_text(f), f.description] for f in families]
    return data, fmt.table(["NAME", "RUNS", "LAWS", "DESCRIPTION"], rows)


def families_create(client: PlannerClient, args: argparse.Namespace) -> Output:
    family = client.create_family(
        args.name, args.description, args.param_convention, args.flops_per_param_token
    )
    return _family_output(family)


def families_show(client: PlannerClient, args: argparse.Namespace) -> Output:
    return _family_output(client.get_family(args.name))


def families_delete(client: PlannerClient, args: argparse.Namespace) -> Output:
    client.delete_family(args.name)
    return {"deleted": args.name}, f"deleted {args.name}"


def runs_add(client: PlannerClient, args: argparse.Namespace) -> Output:
    runs = read_runs(Path(args.file))
    result = client.add_runs(args.family, runs)
    data = {"added": result.added, "unchanged": result.unchanged, "runs": result.family.run_count}
    text = (
        f"added {result.added} runs to {args.family} ({result.unchanged} already stored); "
        f"{result.family.run_count} in all"
    )
    return data, text


def fit(client: PlannerClient, args: argparse.Namespace) -> Output:
    if args.method == "isoflop":
        return _isoflop(client, args)
    law = client.fit_law(
        args.family,
        args.method,
        args.bootstrap,
        args.seed,
        args.form,
        timeout=args.fit_timeout,
        on_progress=ProgressBar() if sys.stderr.isatty() else None,
        base=args.base,
    )
    data = {
        "version": law.version,
        "form": law.form,
        "params": law.parameters,
        "intervals": {k: list(v) for k, v in law.intervals.items()},
        "diagnostics": law.diagnostics,
    }
    order = {
        name: i for i, name in enumerate(("E", "A", "B", "alpha", "beta", "r_d_star", "r_n_star"))
    }
    rows = [
        [name, fmt.number(value), *(fmt.number(v) for v in law.intervals.get(name, (None, None)))]
        for name, value in sorted(law.parameters.items(), key=lambda kv: order.get(kv[0], 99))
    ]
    d = law.diagnostics
    text = "\n".join(
        [
            f"{args.family}: {law.form} v{law.version} by {law.method} on {d.get('runs')} runs, "
            f"{law.ensemble_size} bootstrap fits"
            + (f"; Chinchilla part: {law.options['base']}" if "base" in law.options else ""),
            fmt.table(["PARAMETER", "VALUE", "95% LOW", "95% HIGH"], rows),
            f"RMSE on log loss {fmt.number(d.get('rmse_log_loss'))}, max "
            f"{fmt.number(d.get('max_abs_log_loss'))}"
            + (f"; on a bound: {', '.join(d['on_bound'])}" if d.get("on_bound") else ""),
        ]
    )
    return data, text


def _isoflop(client: PlannerClient, args: argparse.Namespace) -> Output:
    if args.form != "chinchilla" or args.base:
        raise UsageError("--method isoflop takes no --form or --base")
    result = client.fit_isoflop(args.family)
    data = {"method": "isoflop", **result.as_dict()}
    text = "\n".join(
        [
            f"{args.family}: Chinchilla Approach 2 over {len(result.vertices)} budgets "
            "(for comparison; not stored)",
            fmt.table(
                ["BUDGET (FLOPs)", "RUNS", "N AT VERTEX", "D = C / kN"],
                [
                    [fmt.number(v.flops), str(v.runs), fmt.number(v.params), fmt.number(v.tokens)]
                    for v in result.vertices
                ],
            ),
            f"N_opt = {fmt.number(result.params_coefficient)} C^{result.params_exponent:.4f}, "
            f"D_opt = {fmt.number(result.tokens_coefficient)} C^{result.tokens_exponent:.4f}",
            f"caveat: {result.caveat}",
        ]
    )
    return data, text


def bnsl(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.fit_broken_power_law(
        args.family, args.against, args.breaks, args.predict or (), args.seed
    )
    data = result.as_dict()
    data["held_out_error"] = {str(k): v for k, v in result.held_out_error.items()}
    lines = [
        f"{args.family}: loss against {args.against}, {result.breaks} breaks, "
        f"{result.runs} runs up to {fmt.number(result.fitted_up_to)}",
        fmt.table(
            ["PARAMETER", "VALUE"], [[k, fmt.number(v)] for k, v in result.parameters.items()]
        ),
    ]
    if result.held_out_error:
        errors = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(result.held_out_error.items()))
        lines.append(f"held-out error by breaks: {errors}")
    if result.predictions:
        lines.append(
            fmt.table(
                [args.against.upper(), "PREDICTED LOSS", "NOTE"],
                [
                    [
                        fmt.number(p.x),
                        fmt.number(p.value),
                        "extrapolation" if p.extrapolation else "",
                    ]
                    for p in result.predictions
                ],
            )
        )
    return data, "\n".join(lines)


def backtest(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.backtest(args.family, args.train_below, tuple(args.method or ()))
    data = {
        "train_runs": result.train_runs,
        "test_runs": result.test_runs,
        "methods": [
            {
                "method": m.method,
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
                m.method,
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
    head = (
        f"{args.family}: fitted on {result.train_runs} runs below {args.train_below:g} FLOPs, "
        f"predicted {result.test_runs} above"
    )
    return data, "\n\n".join([head, summary, detail])


def plot(client: PlannerClient, args: argparse.Namespace) -> Output:
    from clients import plots

    try:
        out = plots.plot(client, args.family, args.kind, Path(args.out))
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    return {"out": str(out), "kind": args.kind}, f"wrote {out}"


def predict(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.predict(
        args.family, args.params, args.tokens, args.unique_tokens, args.form, args.version
    )
    interval = list(result.interval) if result.interval else None
    law = f"{result.law.form} v{result.law.version}"
    band = f"  (95%: {fmt.number(interval[0])} - {fmt.number(interval[1])})" if interval else ""
    text = f"loss {fmt.number(result.loss)} nats/token{band}  [{args.family}, {law}]"
    return {"loss": result.loss, "interval": interval}, text


def _plan_output(plan: ComputeOptimalPlan) -> Output:
    data = {
        "params": plan.params,
        "tokens": plan.tokens,
        "loss": plan.loss,
        "flops": plan.flops,
        "tokens_per_param": plan.tokens_per_param,
        "binding": plan.binding,
        "intervals": bands_json(plan.intervals),
        "solver": plan.solver,
    }
    if plan.epochs is not None:
        data["epochs"] = plan.epochs

    def band(name: str) -> str:
        return band_text(plan.intervals, name)

    rows = [
        ("params (N)", fmt.number(plan.params) + band("params")),
        ("tokens (D)", fmt.number(plan.tokens) + band("tokens")),
        ("loss", fmt.number(plan.loss) + band("loss")),
        ("FLOPs", fmt.number(plan.flops) + band("flops")),
        ("tokens/param", f"{plan.tokens_per_param:.4g}"),
    ]
    if plan.epochs is not None:
        rows.append(("epochs", f"{plan.epochs:.4g}" + band("epochs")))
    rows += [
        ("binding", ", ".join(plan.binding)),
        ("solver", plan.solver),
        ("law", f"{plan.law.form} v{plan.law.version} ({plan.law.method})"),
    ]
    text = fmt.key_values(rows)
    return data, text


def optimal(client: PlannerClient, args: argparse.Namespace) -> Output:
    accelerator = (args.accelerator_hours, args.peak_flops, args.mfu)
    if args.accelerator_hours is not None and None in accelerator:
        raise UsageError("--accelerator-hours needs --peak-flops and --mfu")
    plan = client.plan_compute_optimal(
        args.family,
        compute=args.compute,
        accelerator_hours=args.accelerator_hours,
        peak_flops_per_second=args.peak_flops,
        mfu=args.mfu,
        target_loss=args.target_loss,
        max_params=args.max_params,
        max_tokens=args.max_tokens,
        unique_tokens=args.unique_tokens,
        max_epochs=args.max_epochs,
        form=args.form,
        version=args.version,
    )
    return _plan_output(plan)


def inference(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.plan_inference(
        args.family,
        args.inference_tokens,
        target_loss=args.target_loss,
        lifetime_budget=args.compute,
        max_params=args.max_params,
        max_tokens=args.max_tokens,
        training_weight=args.training_weight,
        inference_weight=args.inference_weight,
        training_mfu=args.training_mfu,
        inference_mfu=args.inference_mfu,
        form=args.form,
        version=args.version,
    )
    chinchilla = asdict(result.chinchilla)
    data = {
        **asdict(result.plan),
        "chinchilla": chinchilla,
        "saving_flops": result.saving_flops,
        "saving_cost": result.saving_cost,
        "overtraining_ratio": result.overtraining_ratio,
        "binding": result.binding,
        "solver": result.solver,
        "intervals": bands_json(result.intervals),
    }
    fields = [
        ("params (N)", "params"),
        ("tokens (D)", "tokens"),
        ("loss", "loss"),
        ("training FLOPs", "training_flops"),
        ("inference FLOPs", "inference_flops"),
        ("total FLOPs", "total_flops"),
        ("tokens/param", "tokens_per_param"),
        ("cost", "cost"),
    ]
    table = fmt.table(
        ["", "INFERENCE-AWARE", "CHINCHILLA-OPTIMAL"],
        [
            [label, fmt.number(getattr(result.plan, key)), fmt.number(chinchilla[key])]
            for label, key in fields
        ],
    )
    share = result.saving_flops / result.chinchilla.total_flops
    text = "\n".join(
        [
            table,
            f"saves {fmt.number(result.saving_flops)} FLOPs ({share:.1%}); over-trains "
            f"{result.overtraining_ratio:.3g}x the Chinchilla tokens per parameter",
            f"binding: {', '.join(result.binding)}; solver: {result.solver}",
        ]
        + [
            f"{name} over the ensemble:{band_text(result.intervals, name)}"
            for name in result.intervals
        ]
    )
    return data, text


class ProgressBar:
    """A one-line progress bar on stderr: `bootstrap [#####-----]  100/200`."""

    WIDTH = 30

    def __call__(self, stage: str, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        end = "\n" if stage == "bootstrap" and done >= total else ""
        print(f"\r{stage:>9} [{bar}] {done:>4}/{total}", end=end, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planner", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default=os.environ.get("PLANNER_TARGET", "localhost:50051"),
        help="server HOST:PORT (env PLANNER_TARGET; default localhost:50051)",
    )
    parser.add_argument("--token", default=os.environ.get("PLANNER_TOKEN"), help="bearer token")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    families = commands.add_parser("families", help="list, create, show or delete families")
    family_commands = families.add_subparsers(dest="action", required=True, metavar="ACTION")
    family_commands.add_parser("list", help="all families").set_defaults(func=families_list)
    create = family_commands.add_parser("create", help="create an empty family")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--param-convention", choices=["total", "non_embedding"], default="total")
    create.add_argument("--flops-per-param-token", type=float, default=6.0)
    create.set_defaults(func=families_create)
    show = family_commands.add_parser("show", help="one family with its laws")
    show.add_argument("name")
    show.set_defaults(func=families_show)
    delete = family_commands.add_parser("delete", help="delete a family, its runs and laws")
    delete.add_argument("name")
    delete.set_defaults(func=families_delete)

    runs = commands.add_parser("runs", help="training runs of a family")
    run_commands = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = run_commands.add_parser(
        "add", help="add runs from CSV (params,tokens,loss[,unique_tokens,flops,step,run_id])"
    )
    add.add_argument("family")
    add.add_argument("file")
    add.set_defaults(func=runs_add)

    fitter = commands.add_parser("fit", help="fit a law to the family's runs (new version)")
    fitter.add_argument("family")
    fitter.add_argument("--form", default="chinchilla", choices=["chinchilla", "data_constrained"])
    fitter.add_argument(
        "--method",
        default="vpnls",
        choices=["vpnls", "huber", "isoflop"],
        help="Chinchilla fitter (for data_constrained: of the single-epoch part); isoflop runs "
        "Approach 2 for comparison and stores nothing",
    )
    fitter.add_argument(
        "--base",
        default="",
        choices=["", "law", "single_epoch", "joint"],
        help="data_constrained: take E, A, B, alpha, beta from the family's chinchilla law "
        "(law; the default when it has one), fit them to single-epoch runs, or fit all jointly",
    )
    fitter.add_argument("--bootstrap", type=int, default=200, help="resamples (0-1000)")
    fitter.add_argument("--seed", type=int, default=0, help="resampling seed")
    fitter.add_argument("--fit-timeout", type=float, default=600.0, help="seconds to wait")
    fitter.set_defaults(func=fit)

    curve = commands.add_parser(
        "bnsl", help="broken power law of the runs' loss against one variable (not stored)"
    )
    curve.add_argument("family")
    curve.add_argument("--against", default="compute", choices=["compute", "params", "tokens"])
    curve.add_argument(
        "--breaks", type=int, help="0-3 (default: chosen by error on the largest 20%% of x)"
    )
    curve.add_argument(
        "--predict", type=float, nargs="+", metavar="X", help="x values to predict the loss at"
    )
    curve.add_argument("--seed", type=int, default=0, help="seed of the random restarts")
    curve.set_defaults(func=bnsl)

    infer = commands.add_parser(
        "inference", help="inference-aware plan: least lifetime cost (training + serving)"
    )
    infer.add_argument("family")
    infer.add_argument(
        "--inference-tokens", type=float, required=True, help="tokens served over the lifetime"
    )
    infer_goal = infer.add_mutually_exclusive_group(required=True)
    infer_goal.add_argument("--target-loss", type=float, help="loss to reach (nats/token)")
    infer_goal.add_argument("--compute", type=float, help="lifetime budget (FLOPs at weight 1)")
    infer.add_argument("--max-params", type=float, help="cap on parameters")
    infer.add_argument("--max-tokens", type=float, help="cap on training tokens")
    infer.add_argument("--training-weight", type=float, help="price per training FLOP")
    infer.add_argument("--inference-weight", type=float, help="price per inference FLOP")
    infer.add_argument("--training-mfu", type=float, help="training MFU, (0, 1]")
    infer.add_argument("--inference-mfu", type=float, help="inference MFU, (0, 1]")
    law_selector(infer)
    infer.set_defaults(func=inference)

    back = commands.add_parser("backtest", help="fit below a compute cut, score above it")
    back.add_argument("family")
    back.add_argument("--train-below", type=float, required=True, help="compute cut, FLOPs")
    back.add_argument(
        "--method", action="append", choices=["vpnls", "huber"], help="repeatable; default both"
    )
    back.set_defaults(func=backtest)

    picture = commands.add_parser("plot", help="draw the law: fit, isoflop or frontier (PNG)")
    picture.add_argument("family")
    picture.add_argument("--kind", choices=["fit", "isoflop", "frontier"], required=True)
    picture.add_argument("--out", required=True, help="PNG file to write")
    picture.set_defaults(func=plot)

    pred = commands.add_parser("predict", help="predicted loss of N params on D tokens")
    pred.add_argument("family")
    pred.add_argument("--params", type=float, required=True, help="parameters N")
    pred.add_argument("--tokens", type=float, required=True, help="training tokens D")
    pred.add_argument("--unique-tokens", type=float, help="unique tokens U (repetition laws)")
    law_selector(pred)
    pred.set_defaults(func=predict)

    opt = commands.add_parser("optimal", help="compute-optimal N and D for a budget")
    opt.add_argument("family")
    goal = opt.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, help="training budget in FLOPs")
    goal.add_argument("--accelerator-hours", type=float, help="budget in accelerator-hours")
    goal.add_argument("--target-loss", type=float, help="least compute to reach this loss")
    opt.add_argument("--peak-flops", type=float, help="peak FLOP/s per accelerator")
    opt.add_argument("--mfu", type=float, help="model FLOPs utilisation in (0, 1]")
    opt.add_argument("--max-params", type=float, help="cap on N")
    opt.add_argument("--max-tokens", type=float, help="cap on D")
    opt.add_argument("--unique-tokens", type=float, help="unique tokens available")
    opt.add_argument(
        "--max-epochs",
        type=float,
        help="passes over the unique tokens (default 1; unlimited on a data_constrained law)",
    )
    law_selector(opt)
    opt.set_defaults(func=optimal)
    planning_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[PlannerClient, argparse.Namespace], Output] = args.func
    try:
        with PlannerClient(args.target, args.token, args.timeout) as client:
            data, text = command(client, args)
    except PlannerClientError as error:
        return _fail(args, error.as_dict(), f"{error.code}: {error.message}", 1)
    except (CsvError, UsageError) as error:
        return _fail(args, {"code": "USAGE", "message": str(error)}, str(error), 2)
    print(json.dumps(data) if args.json else text)
    return 0


def _fail(args: argparse.Namespace, error: dict[str, Any], message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": error}))
    print(f"planner: error: {message}", file=sys.stderr)
    for violation in error.get("field_violations", []):
        if violation["description"] not in message:
            print(f"  {violation['field']}: {violation['description']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
