"""`planner fit`, `planner backtest` and `planner laws show|versions|promote`: fitting laws to a
family's runs, with the fit options (checkpoints, tied exponents, fixed or borrowed parameters,
an over-estimate penalty), and choosing which stored version is current. A fit runs on the
server as an operation, which `fit` waits for unless told to `--detach`."""

from __future__ import annotations

import argparse
from typing import Any

from clients import formatting as fmt
from clients import operation_commands
from clients.client import FIT_TIMEOUT, PlannerClient
from clients.command_base import Output, UsageError
from clients.curve_commands import parse_spec
from clients.law_output import (
    auto_text,
    backtest_output,
    diagnostics_text,
    law_json,
    options_text,
    parameter_table,
    promote_command,
    rows_text,
)
from clients.results import FitOptions, LawSelector
from planner_api.v1 import planner_pb2 as pb

FORMS = (
    "chinchilla",
    "data_constrained",
    "overtraining",
    "bnsl_compute",
    "bnsl_params",
    "bnsl_tokens",
    "compute_power",
    # Loss-curve laws, from checkpoints carrying step and lr; the Step Law, from finished runs
    # carrying lr and batch_tokens.
    "multi_power",
    "lr_annealing",
    "step_law",
)
CURVE_FORMS = ("multi_power", "lr_annealing")
FIT_METHODS = ("auto", "vpnls", "huber")
CHECKPOINT_MODES = ("final", "all", "after-fraction")


# -- option flags shared by fit and backtest ----------------------------------------------------


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """The FitOptions flags."""
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        metavar=("MODE", "F"),
        help="which rows of runs with several checkpoints are fitted: final (each run's last; "
        "the default), all, or after-fraction F (each run's checkpoints at or after F of its "
        "tokens, 0 < F <= 1)",
    )
    parser.add_argument(
        "--tie-exponents", action="store_true", help="fit alpha = beta (one exponent)"
    )
    parser.add_argument(
        "--fix",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=VALUE",
        help="hold parameters at values instead of fitting them (E, A, B, alpha, beta)",
    )
    parser.add_argument(
        "--borrow",
        metavar="FAMILY[:FORM[:VERSION]]",
        help="take parameters from another law version (e.g. a larger family's exponents)",
    )
    parser.add_argument(
        "--borrow-params",
        metavar="NAMES",
        help="comma-separated parameters to take from --borrow, e.g. alpha,beta (default: all)",
    )
    parser.add_argument(
        "--overestimate-penalty",
        type=float,
        metavar="P",
        help="over-estimates cost P times more than under-estimates (huber, vpnls and auto's huber "
        "candidates; up to 1000)",
    )


def _checkpoints(values: list[str] | None) -> tuple[str, float]:
    if not values:
        return "", 0.0
    mode = values[0].replace("_", "-")
    if mode in ("final", "all") and len(values) == 1:
        return mode, 0.0
    if mode == "after-fraction" and len(values) == 2:
        try:
            return "after_fraction", float(values[1])
        except ValueError:
            pass
    raise UsageError(
        f"--checkpoints {' '.join(values)}: expected final, all or after-fraction F "
        "(a number in (0, 1])"
    )


def _fixed(pairs: list[str], flag: str = "--fix") -> dict[str, float]:
    """NAME=VALUE pairs (of `flag`) as a map."""
    fixed: dict[str, float] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if not equals or not name or value is None:
            raise UsageError(f"{flag} {pair}: expected NAME=VALUE, e.g. E=1.69")
        if name in fixed:
            raise UsageError(f"{flag}: {name} is given more than once")
        fixed[name] = value
    return fixed


def parse_selector(text: str, flag: str = "--borrow") -> LawSelector:
    """FAMILY[:FORM[:VERSION]] as a LawSelector."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UsageError(f"{flag} {text}: expected FAMILY[:FORM[:VERSION]]")
    version = 0
    if len(parts) == 3:
        try:
            version = int(parts[2])
        except ValueError:
            raise UsageError(f"{flag} {text}: VERSION must be a whole number") from None
    return LawSelector(parts[0], parts[1] if len(parts) > 1 else "", version)


def fit_options(args: argparse.Namespace) -> FitOptions | None:
    """The options the flags ask for; None when no flag is given."""
    checkpoints, fraction = _checkpoints(args.checkpoints)
    if args.borrow_params is not None and args.borrow is None:
        raise UsageError("--borrow-params needs --borrow FAMILY[:FORM[:VERSION]]")
    borrow = [name.strip() for name in (args.borrow_params or "").split(",") if name.strip()]
    options = FitOptions(
        checkpoints=checkpoints,
        after_fraction=fraction,
        tie_exponents=args.tie_exponents,
        fixed=_fixed(args.fix),
        borrow_from=None if args.borrow is None else parse_selector(args.borrow),
        borrow=borrow,
        overestimate_penalty=args.overestimate_penalty or 0.0,
    )
    return None if options == FitOptions() else options


# -- fit ------------------------------------------------------------------------------------


def fit(client: PlannerClient, args: argparse.Namespace) -> Output:
    options = fit_options(args)
    if args.method == "isoflop":
        if args.form != "chinchilla" or args.base or options or args.breaks is not None:
            raise UsageError("--method isoflop takes no --form, --base, --breaks or fit options")
        if args.detach:
            raise UsageError("--method isoflop answers at once and stores nothing: no --detach")
        return _isoflop(client, args)
    if args.breaks is not None and not args.form.startswith("bnsl_"):
        raise UsageError("--breaks applies to the bnsl_compute, bnsl_params and bnsl_tokens forms")
    schedules = _schedules(args.schedule)
    if schedules and args.form not in CURVE_FORMS:
        raise UsageError(f"--schedule applies to the {' and '.join(CURVE_FORMS)} forms")
    operation = client.start_fit(
        args.family,
        args.method,
        args.bootstrap,
        args.seed,
        args.form,
        base=args.base,
        options=options,
        make_current=args.make_current,
        breaks=args.breaks,
        schedules=schedules,
    )
    if args.detach:
        return operation_commands.detached(args, operation)
    finished = operation_commands.wait(client, operation.name, args.fit_timeout)
    return operation_commands.result_output(args, finished)


def _schedules(pairs: list[str]) -> dict[str, pb.Schedule]:
    """--schedule RUN_ID=SPEC pairs, by run_id (SPEC as `planner curve --schedule`)."""
    schedules: dict[str, pb.Schedule] = {}
    for pair in pairs:
        run_id, equals, spec = pair.partition("=")
        if not equals or not run_id or not spec:
            raise UsageError(f"--schedule {pair}: expected RUN_ID=SPEC, e.g. run-1=file:lrs.csv")
        if run_id in schedules:
            raise UsageError(f"--schedule: run {run_id!r} is given more than once")
        schedules[run_id] = parse_spec(spec)
    return schedules


def _isoflop(client: PlannerClient, args: argparse.Namespace) -> Output:
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


# -- backtest -------------------------------------------------------------------------------


def backtest(client: PlannerClient, args: argparse.Namespace) -> Output:
    methods, options = tuple(args.method or ()), fit_options(args)
    if args.detach:
        operation = client.start_backtest(args.family, args.train_below, methods, options)
        return operation_commands.detached(args, operation)
    result = client.backtest(args.family, args.train_below, methods, options=options)
    return backtest_output(result, args.family, args.train_below)


# -- laws show | versions | promote ----------------------------------------------------------


def laws_show(client: PlannerClient, args: argparse.Namespace) -> Output:
    law = client.get_law(args.family, args.form, args.version)
    current = (
        "yes (queries without a version use it)"
        if law.current
        else f"no (to make it current: {promote_command(law)})"
    )
    source = law.method + (f"; {law.citation}" if law.citation else "")
    pairs = [
        ("law", f"{law.family}: {law.form} v{law.version}"),
        ("current", current),
        ("source", source),
    ]
    if law.note:
        pairs.append(("note", law.note))
    pairs += [("created", law.create_time or "-"), ("options", options_text(law))]
    if law.diagnostics:
        failed = law.diagnostics.get("failed_resamples") or 0
        pairs += [
            ("fitted to", rows_text(law)),
            (
                "bootstrap",
                f"{law.ensemble_size} fits" + (f", {failed} resamples failed" if failed else ""),
            ),
        ]
    lines = [fmt.key_values(pairs), parameter_table(law)]
    if law.diagnostics:
        lines.append(diagnostics_text(law))
    if law.auto is not None:
        lines.append(auto_text(law.auto))
    lines += [f"warning: {w}" for w in law.warnings]
    return law_json(law), "\n".join(lines)


def laws_versions(client: PlannerClient, args: argparse.Namespace) -> Output:
    laws = client.list_law_versions(args.family, args.form)
    data = {
        "laws": [
            {
                "form": law.form,
                "version": law.version,
                "method": law.method,
                "current": law.current,
                "create_time": law.create_time,
                "warnings": law.warnings,
            }
            for law in laws
        ]
    }
    rows = [
        [
            law.form,
            str(law.version),
            law.method + (" (auto)" if law.auto else ""),
            "*" if law.current else "",
            law.create_time,
            str(len(law.warnings)),
        ]
        for law in laws
    ]
    text = fmt.table(["FORM", "VERSION", "METHOD", "CURRENT", "CREATED", "WARNINGS"], rows)
    return data, text


def laws_put(client: PlannerClient, args: argparse.Namespace) -> Output:
    parameters = _fixed(args.param, "--param")
    law = client.put_law(args.family, args.form, parameters, args.citation, args.note)
    data = {
        "family": law.family,
        "form": law.form,
        "version": law.version,
        "current": law.current,
        "parameters": law.parameters,
    }
    return data, f"{law.family}: stored {law.form} v{law.version} (published parameters)"


def laws_promote(client: PlannerClient, args: argparse.Namespace) -> Output:
    law = client.set_current_law(args.family, args.form, args.version)
    data = {"family": law.family, "form": law.form, "version": law.version, "current": law.current}
    return data, f"{law.family}: {law.form} v{law.version} is now the current {law.form} law"


# -- parsers --------------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add fit, backtest and laws to the `planner` subparsers."""
    fitter = commands.add_parser("fit", help="fit a law to the family's runs (new version)")
    fitter.add_argument("family")
    fitter.add_argument("--form", default="chinchilla", choices=FORMS)
    fitter.add_argument(
        "--method",
        default="auto",
        choices=[*FIT_METHODS, "isoflop"],
        help="auto (default: every method and option scored on held-out larger runs, the best "
        "refitted on all), vpnls or huber (for data_constrained: of the single-epoch part; for "
        "multi_power, auto is the authors' early-stopped AdamW and huber a minimiser); "
        "isoflop runs Approach 2 for comparison and stores nothing",
    )
    fitter.add_argument(
        "--base",
        default="",
        choices=["", "law", "single_epoch", "joint"],
        help="data_constrained: take E, A, B, alpha, beta from the family's chinchilla law "
        "(law; the default when it has one), fit them to single-epoch runs, or fit all jointly",
    )
    add_option_flags(fitter)
    fitter.add_argument(
        "--schedule",
        action="append",
        default=[],
        metavar="RUN_ID=SPEC",
        help="multi_power and lr_annealing, repeatable: run RUN_ID's learning rate at every "
        "step, SPEC as in `planner curve --schedule` (e.g. "
        "run-1=cosine:steps=24000,peak=3e-4,floor=3e-5,warmup=2160, or run-1=file:lrs.csv, a "
        "CSV with an lr column holding every step's rate from step 0); checked against the "
        "run's checkpoints' lr. A run without one has its schedule interpolated linearly "
        "between its checkpoints, from lr 0 at step 0 (a linear warm-up) unless it has a "
        "checkpoint at step 0",
    )
    fitter.add_argument(
        "--breaks", type=int, help="bnsl_* forms: 0-3 (default: chosen by held-out error)"
    )
    fitter.add_argument(
        "--make-current",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make the new version current even with warnings (--no-make-current: store it "
        "only); by default it is made current unless the fit has warnings",
    )
    fitter.add_argument(
        "--bootstrap",
        type=int,
        help="resamples, 0-1000 (default 200); multi_power and lr_annealing fits have none "
        "(leave it out or give 0)",
    )
    fitter.add_argument("--seed", type=int, default=0, help="resampling seed")
    fitter.add_argument(
        "--fit-timeout",
        type=float,
        default=FIT_TIMEOUT,
        help="seconds to wait (the fit keeps running after, as an operation)",
    )
    operation_commands.add_detach_flag(fitter)
    fitter.set_defaults(func=fit)

    back = commands.add_parser("backtest", help="fit below a compute cut, score above it")
    back.add_argument("family")
    back.add_argument("--train-below", type=float, required=True, help="compute cut, FLOPs")
    back.add_argument(
        "--method",
        action="append",
        choices=FIT_METHODS,
        help="repeatable; default vpnls, huber and auto",
    )
    add_option_flags(back)
    operation_commands.add_detach_flag(back)
    back.set_defaults(func=backtest)

    laws = commands.add_parser(
        "laws", help="stored law versions: show, list, store given parameters, make current"
    )
    law_commands = laws.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = law_commands.add_parser(
        "show", help="one version: parameters, intervals, diagnostics, warnings, auto choice"
    )
    show.add_argument("family")
    show.add_argument("--form", default="", help="law form (default: the family's first)")
    show.add_argument("--version", type=int, default=0, help="law version (default: current)")
    show.set_defaults(func=laws_show)
    versions = law_commands.add_parser("versions", help="every stored version, oldest first")
    versions.add_argument("family")
    versions.add_argument("--form", default="", help="law form (default: every form)")
    versions.set_defaults(func=laws_versions)
    put = law_commands.add_parser(
        "put", help="store given parameters (a published law) as a new version of a form"
    )
    put.add_argument("family")
    put.add_argument("--form", required=True, help="law form, e.g. chinchilla, multi_power")
    put.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one parameter of the form (repeat for each), e.g. --param E=1.69",
    )
    put.add_argument("--citation", default="", help="where the parameters come from")
    put.add_argument("--note", default="", help="free text: conventions, caveats")
    put.set_defaults(func=laws_put)
    promote = law_commands.add_parser(
        "promote", help="make a stored version the current law of its form"
    )
    promote.add_argument("family")
    promote.add_argument("--form", required=True, help="law form")
    promote.add_argument("--version", type=int, required=True, help="version to make current")
    promote.set_defaults(func=laws_promote)
