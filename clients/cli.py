"""`planner`: the command line of the compute-budget planner (contract: DESIGN.md §5).

    planner [--target HOST:PORT] [--token-file PATH] [--tls] [--ca-file PEM] [--json] COMMAND

The bearer token comes from --token-file, PLANNER_TOKEN_FILE or PLANNER_TOKEN (--token T still
works, but puts the token where `ps` shows it). With --json exactly one JSON object goes to
stdout (numbers in SI units); errors exit non-zero with the server's message on stderr (and,
with --json, an {"error": ...} object on stdout).
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

from clients import (
    compare_commands,
    curve_commands,
    law_commands,
    operation_commands,
    planning_commands,
    run_commands,
    task_commands,
)
from clients import formatting as fmt
from clients.client import PlannerClient, PlannerClientError
from clients.command_base import (
    Output,
    StillRunning,
    UsageError,
    band_text,
    bands_json,
    law_selector,
    notices,
)
from clients.csv_runs import CsvError
from clients.planning_commands import hardware, hardware_arguments, with_training
from clients.results import ComputeOptimalPlan, Family, Hardware


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
            ("metric", family.metric or "-"),
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
        args.name,
        args.description,
        args.param_convention,
        args.flops_per_param_token,
        args.metric,
    )
    return _family_output(family)


def families_show(client: PlannerClient, args: argparse.Namespace) -> Output:
    return _family_output(client.get_family(args.name))


def families_delete(client: PlannerClient, args: argparse.Namespace) -> Output:
    client.delete_family(args.name)
    return {"deleted": args.name}, f"deleted {args.name}"


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


def plot(client: PlannerClient, args: argparse.Namespace) -> Output:
    from clients import plots

    try:
        out = plots.plot(client, args.family, args.kind, Path(args.out))
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    return {"out": str(out), "kind": args.kind}, f"wrote {out}"


def predict(client: PlannerClient, args: argparse.Namespace) -> Output:
    result = client.predict(
        args.family,
        args.params,
        args.tokens,
        args.unique_tokens,
        args.form,
        args.version,
        interval_kind=args.interval or "",
    )
    interval = list(result.interval) if result.interval else None
    law = f"{result.law.form} v{result.law.version}"
    kind = "prediction interval" if result.interval_kind == "prediction" else "band"
    band = (
        f"  (95% {kind}: {fmt.number(interval[0])} - {fmt.number(interval[1])})" if interval else ""
    )
    text = f"loss {fmt.number(result.loss)} nats/token{band}  [{args.family}, {law}]"
    data = {"loss": result.loss, "interval": interval, "interval_kind": result.interval_kind}
    return data, text


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
    return with_training((data, text), plan.training)


def optimal(client: PlannerClient, args: argparse.Namespace) -> Output:
    accelerator = (args.accelerator_hours, args.peak_flops, args.mfu)
    if args.accelerator_hours is not None and None in accelerator:
        raise UsageError("--accelerator-hours needs --peak-flops and --mfu")
    accelerator_flags = (args.accelerators, args.accelerator_hours)
    if accelerator_flags == (None, None) and (args.peak_flops, args.mfu) != (None, None):
        raise UsageError(
            "--peak-flops and --mfu describe one accelerator: add --accelerators N for a "
            "hardware profile, or give the budget as --accelerator-hours"
        )
    # The same --peak-flops and --mfu size an accelerator-hour budget and make the profile.
    profile = hardware(args, budget_uses_accelerator=args.accelerator_hours is not None)
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
        hardware=profile,
        hyperparameter_law=args.hyperparameter_law,
        target_accuracy=args.target_accuracy,
    )
    return _plan_output(plan)


def serving(args: argparse.Namespace) -> Hardware | None:
    """The serving cluster of `inference`, or None. It only prices inference FLOPs, so its
    accelerator count does not matter (1 is sent)."""
    flags = (args.inference_peak_flops, args.inference_price_per_hour)
    if flags == (None, None):
        return None
    if None in flags or args.inference_mfu is None:
        raise UsageError(
            "the serving cluster needs --inference-peak-flops, --inference-mfu and "
            "--inference-price-per-hour"
        )
    return Hardware(1, args.inference_peak_flops, args.inference_mfu, args.inference_price_per_hour)


def inference(client: PlannerClient, args: argparse.Namespace) -> Output:
    serve = serving(args)
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
        # With a serving cluster its MFU is the profile's (cost is then money).
        inference_mfu=None if serve else args.inference_mfu,
        form=args.form,
        version=args.version,
        hardware=hardware(args),
        inference_hardware=serve,
        hyperparameter_law=args.hyperparameter_law,
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
        + (
            # Both clusters priced: the cost columns are money.
            [f"in money: saves {result.saving_cost:.2f} of {result.chinchilla.cost:.2f}"]
            if serve is not None
            else []
        )
        + [
            f"{name} over the ensemble:{band_text(result.intervals, name)}"
            for name in result.intervals
        ]
    )
    return with_training((data, text), result.training)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planner", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default=os.environ.get("PLANNER_TARGET", "localhost:50051"),
        help="server HOST:PORT (env PLANNER_TARGET; default localhost:50051)",
    )
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the bearer token (env PLANNER_TOKEN_FILE; else env PLANNER_TOKEN)",
    )
    given.add_argument(
        "--token",
        help="bearer token (deprecated: other users see it in `ps`; use PLANNER_TOKEN or "
        "--token-file)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    tls = parser.add_argument_group("TLS (implied by any of its files)")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("PLANNER_TLS", "").lower() in ("1", "true", "yes"),
        help="connect with TLS, verifying the server (env PLANNER_TLS=1)",
    )
    tls.add_argument(
        "--ca-file",
        default=os.environ.get("PLANNER_TLS_CA"),
        metavar="PEM",
        help="CA certificates that verify the server (env PLANNER_TLS_CA; default: the "
        "system's roots)",
    )
    tls.add_argument(
        "--cert-file",
        default=os.environ.get("PLANNER_TLS_CLIENT_CERT"),
        metavar="PEM",
        help="client certificate for mutual TLS (env PLANNER_TLS_CLIENT_CERT)",
    )
    tls.add_argument(
        "--key-file",
        default=os.environ.get("PLANNER_TLS_CLIENT_KEY"),
        metavar="PEM",
        help="its private key (env PLANNER_TLS_CLIENT_KEY)",
    )
    tls.add_argument(
        "--server-name",
        default=os.environ.get("PLANNER_TLS_SERVER_NAME"),
        help="name expected in the server's certificate, when not the target's host "
        "(env PLANNER_TLS_SERVER_NAME)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    families = commands.add_parser("families", help="list, create, show or delete families")
    family_commands = families.add_subparsers(dest="action", required=True, metavar="ACTION")
    family_commands.add_parser("list", help="all families").set_defaults(func=families_list)
    create = family_commands.add_parser("create", help="create an empty family")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--param-convention", choices=["total", "non_embedding"], default="total")
    create.add_argument("--flops-per-param-token", type=float, default=6.0)
    create.add_argument(
        "--metric",
        default="",
        help='what the losses measure, e.g. "C4 validation loss, nats/token" (compare refuses '
        "two families whose metrics differ)",
    )
    create.set_defaults(func=families_create)
    show = family_commands.add_parser("show", help="one family with its laws")
    show.add_argument("name")
    show.set_defaults(func=families_show)
    delete = family_commands.add_parser("delete", help="delete a family, its runs and laws")
    delete.add_argument("name")
    delete.set_defaults(func=families_delete)

    run_commands.register(commands)
    law_commands.register(commands)
    operation_commands.register(commands)

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
    infer_goal.add_argument(
        "--compute",
        type=float,
        help="lifetime budget (FLOPs at weight 1; money when both clusters are priced)",
    )
    infer.add_argument("--max-params", type=float, help="cap on parameters")
    infer.add_argument("--max-tokens", type=float, help="cap on training tokens")
    infer.add_argument("--training-weight", type=float, help="price per training FLOP")
    infer.add_argument("--inference-weight", type=float, help="price per inference FLOP")
    infer.add_argument(
        "--training-mfu",
        type=float,
        help="training MFU weighting cost, (0, 1] (not with a priced serving cluster: --mfu then)",
    )
    law_selector(infer)
    hardware_arguments(infer)
    serve = infer.add_argument_group(
        "serving cluster",
        "With the training cluster priced (--accelerators, --peak-flops, --mfu, "
        "--price-per-hour) and these three, lifetime cost is money: each phase's FLOPs / "
        "(peak x MFU) accelerator-seconds at its price per hour; the weights and "
        "--training-mfu must then not be given. The serving accelerators' count does not "
        "change the cost, so none is asked for.",
    )
    serve.add_argument(
        "--inference-peak-flops", type=float, metavar="F", help="peak FLOP/s of one accelerator"
    )
    serve.add_argument(
        "--inference-mfu",
        type=float,
        metavar="X",
        help="MFU reached in inference, (0, 1]: the serving cluster's, or without one a cost "
        "weight",
    )
    serve.add_argument(
        "--inference-price-per-hour", type=float, metavar="P", help="price of one accelerator-hour"
    )
    infer.set_defaults(func=inference)

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
    pred.add_argument(
        "--interval",
        choices=["band", "prediction"],
        help="band (default): where the law's mean loss lies, 95%% over the bootstrap ensemble; "
        "prediction: 95%% for one new run (the band widened by the fit's residual noise)",
    )
    law_selector(pred)
    pred.set_defaults(func=predict)

    opt = commands.add_parser("optimal", help="compute-optimal N and D for a budget")
    opt.add_argument("family")
    goal = opt.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, help="training budget in FLOPs")
    goal.add_argument(
        "--accelerator-hours",
        type=float,
        help="budget in accelerator-hours (needs --peak-flops and --mfu)",
    )
    goal.add_argument("--target-loss", type=float, help="least compute to reach this loss")
    goal.add_argument(
        "--target-accuracy",
        type=task_commands.parse_target_accuracy,
        metavar="TASK=ACC",
        help="least compute to reach this accuracy (a fraction) on a task, through the family's "
        "task law (the plan's loss is then the task's loss)",
    )
    opt.add_argument("--max-params", type=float, help="cap on N")
    opt.add_argument("--max-tokens", type=float, help="cap on D")
    opt.add_argument("--unique-tokens", type=float, help="unique tokens available")
    opt.add_argument(
        "--max-epochs",
        type=float,
        help="passes over the unique tokens (default 1; unlimited on a data_constrained law)",
    )
    law_selector(opt)
    hardware_arguments(opt, accelerator_budget=True)
    opt.set_defaults(func=optimal)
    planning_commands.register(commands)
    curve_commands.register(commands)
    compare_commands.register(commands)
    task_commands.register(commands)
    return parser


def read_token_file(path: str) -> str:
    """The token in `path`, surrounding whitespace (the trailing newline) stripped; UsageError
    when the file cannot be read, is empty or holds more than one line."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot read the token file {path}: {reason}") from None
    if not token:
        raise UsageError(f"the token file {path} is empty")
    if "\n" in token:
        raise UsageError(f"the token file {path} holds more than one line; it must hold the token")
    return token


def bearer_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token (with a warning), PLANNER_TOKEN_FILE or
    PLANNER_TOKEN, in that order; None for none."""
    if args.token_file is not None:
        return read_token_file(args.token_file)
    if args.token is not None:
        print(
            "planner: warning: --token puts the token in the command line, which other users "
            "see in `ps`; use PLANNER_TOKEN or --token-file",
            file=sys.stderr,
        )
        return str(args.token)
    if path := os.environ.get("PLANNER_TOKEN_FILE"):
        return read_token_file(path)
    return os.environ.get("PLANNER_TOKEN") or None


def connect(args: argparse.Namespace) -> PlannerClient:
    """The client the global options describe; UsageError for a token or TLS file that cannot
    be read."""
    token = bearer_token(args)
    try:
        return PlannerClient(
            args.target,
            token,
            args.timeout,
            tls=args.tls,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            server_name=args.server_name,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[PlannerClient, argparse.Namespace], Output] = args.func
    try:
        with connect(args) as client:
            data, text = command(client, args)
    except PlannerClientError as error:
        return _fail(args, error.as_dict(), f"{error.code}: {error.message}", 1)
    except (CsvError, UsageError) as error:
        return _fail(args, {"code": "USAGE", "message": str(error)}, str(error), 2)
    except StillRunning as stopped:
        return _stopped(args, stopped)
    print(json.dumps(data) if args.json else text)
    for line in notices(args):
        print(line, file=sys.stderr)
    return 0


def _fail(args: argparse.Namespace, error: dict[str, Any], message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": error}))
    print(f"planner: error: {message}", file=sys.stderr)
    for violation in error.get("field_violations", []):
        if violation["description"] not in message:
            print(f"  {violation['field']}: {violation['description']}", file=sys.stderr)
    return code


def _stopped(args: argparse.Namespace, stopped: StillRunning) -> int:
    """Ctrl-C while waiting for an operation: it runs on; say how to follow it. Exit 130, as
    a shell reports an interrupted command."""
    if args.json:
        error = {"code": "INTERRUPTED", "message": str(stopped), "operation": stopped.name}
        print(json.dumps({"error": error}))
    print(f"planner: {stopped}", file=sys.stderr)
    for line in stopped.hints():
        print(line, file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
