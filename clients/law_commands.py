"""`planner fit`, `planner backtest` and `planner laws show|versions|promote`: fitting laws to a
family's runs, with the fit options (checkpoints, tied exponents, fixed or borrowed parameters,
an over-estimate penalty), and choosing which stored version is current."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from clients import formatting as fmt
from clients.client import PlannerClient
from clients.command_base import Output, UsageError, notice
from clients.results import AutoChoice, FitOptions, Law, LawSelector

FORMS = (
    "chinchilla",
    "data_constrained",
    "overtraining",
    "bnsl_compute",
    "bnsl_params",
    "bnsl_tokens",
)
FIT_METHODS = ("auto", "vpnls", "huber")
CHECKPOINT_MODES = ("final", "all", "after-fraction")
# Parameters first in this order, the rest after them by name.
PARAMETER_ORDER = ("E", "A", "B", "alpha", "beta", "a", "b", "eta", "r_d_star", "r_n_star")


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


def _fixed(pairs: list[str]) -> dict[str, float]:
    fixed: dict[str, float] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if not equals or not name or value is None:
            raise UsageError(f"--fix {pair}: expected NAME=VALUE, e.g. E=1.69")
        if name in fixed:
            raise UsageError(f"--fix: {name} is given more than once")
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


# -- output pieces --------------------------------------------------------------------------


def _ordered(parameters: dict[str, float]) -> list[tuple[str, float]]:
    rank = {name: i for i, name in enumerate(PARAMETER_ORDER)}
    return sorted(parameters.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _parameter_table(law: Law) -> str:
    rows = [
        [name, fmt.number(value), *(fmt.number(v) for v in law.intervals.get(name, (None, None)))]
        for name, value in _ordered(law.parameters)
    ]
    return fmt.table(["PARAMETER", "VALUE", "95% LOW", "95% HIGH"], rows)


def auto_json(auto: AutoChoice | None) -> dict[str, Any] | None:
    return None if auto is None else asdict(auto)


def _auto_text(auto: AutoChoice) -> str:
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


def _options_text(law: Law) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(law.options.items())) or "-"


def _diagnostics_text(law: Law) -> str:
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


def _rows_text(law: Law) -> str:
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


# -- fit ------------------------------------------------------------------------------------


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


def fit(client: PlannerClient, args: argparse.Namespace) -> Output:
    options = fit_options(args)
    if args.method == "isoflop":
        if args.form != "chinchilla" or args.base or options or args.breaks is not None:
            raise UsageError("--method isoflop takes no --form, --base, --breaks or fit options")
        return _isoflop(client, args)
    if args.breaks is not None and not args.form.startswith("bnsl_"):
        raise UsageError("--breaks applies to the bnsl_compute, bnsl_params and bnsl_tokens forms")
    progress = ProgressBar() if sys.stderr.isatty() else None
    try:
        law = client.fit_law(
            args.family,
            args.method,
            args.bootstrap,
            args.seed,
            args.form,
            timeout=args.fit_timeout,
            on_progress=progress,
            base=args.base,
            options=options,
            make_current=args.make_current,
            breaks=args.breaks,
        )
    finally:
        if progress is not None:
            progress.finish()
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
        f"{args.family}: {law.form} v{law.version} by {law.method}"
        + (" (method auto)" if law.auto else "")
        + f" on {_rows_text(law)}, {law.ensemble_size} bootstrap fits"
        + (f" ({failed} resamples failed)" if failed else "")
        + (f"; Chinchilla part: {law.options['base']}" if "base" in law.options else ""),
        _parameter_table(law),
        _diagnostics_text(law),
        f"options: {_options_text(law)}",
    ]
    if law.auto is not None:
        lines.append(_auto_text(law.auto))
    for warning in law.warnings:
        notice(args, f"warning: {warning}")
    if law.current:
        lines.append(f"v{law.version} is now the current {law.form} law of {args.family}")
    else:
        why = "--no-make-current" if args.make_current is False else "the fit has warnings"
        hint = (
            f"v{law.version} was stored but NOT made current ({why}); queries that name no "
            f"version do not use it. To make it current: {promote_command(law)}"
        )
        lines.append(hint)
        if args.json:
            notice(args, f"note: {hint}")
    return data, "\n".join(lines)


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
    result = client.backtest(
        args.family, args.train_below, tuple(args.method or ()), options=fit_options(args)
    )
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
    head = (
        f"{args.family}: fitted on {result.train_runs} runs below {args.train_below:g} FLOPs, "
        f"predicted {result.test_runs} above"
    )
    return data, "\n\n".join([head, summary, detail])


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
    pairs += [("created", law.create_time or "-"), ("options", _options_text(law))]
    if law.diagnostics:
        failed = law.diagnostics.get("failed_resamples") or 0
        pairs += [
            ("fitted to", _rows_text(law)),
            (
                "bootstrap",
                f"{law.ensemble_size} fits" + (f", {failed} resamples failed" if failed else ""),
            ),
        ]
    lines = [fmt.key_values(pairs), _parameter_table(law)]
    if law.diagnostics:
        lines.append(_diagnostics_text(law))
    if law.auto is not None:
        lines.append(_auto_text(law.auto))
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
        "refitted on all), vpnls or huber (for data_constrained: of the single-epoch part); "
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
        "--breaks", type=int, help="bnsl_* forms: 0-3 (default: chosen by held-out error)"
    )
    fitter.add_argument(
        "--make-current",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make the new version current even with warnings (--no-make-current: store it "
        "only); by default it is made current unless the fit has warnings",
    )
    fitter.add_argument("--bootstrap", type=int, default=200, help="resamples (0-1000)")
    fitter.add_argument("--seed", type=int, default=0, help="resampling seed")
    fitter.add_argument("--fit-timeout", type=float, default=600.0, help="seconds to wait")
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
    back.set_defaults(func=backtest)

    laws = commands.add_parser("laws", help="stored law versions: show, list, make current")
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
    promote = law_commands.add_parser(
        "promote", help="make a stored version the current law of its form"
    )
    promote.add_argument("family")
    promote.add_argument("--form", required=True, help="law form")
    promote.add_argument("--version", type=int, required=True, help="version to make current")
    promote.set_defaults(func=laws_promote)
