"""`planner curve` and `planner schedule`: loss curves of learning-rate schedules under a
family's loss-curve law (multi_power or lr_annealing), and the schedule that law prefers."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clients import formatting as fmt
from clients.client import (
    PlannerClient,
    SchedulePlan,
    named_schedule,
    rates_schedule,
)
from clients.command_base import Output, UsageError, law_selector
from planner_api.v1 import planner_pb2 as pb

SPEC_HELP = """\
a schedule, repeatable: FAMILY:KEY=VALUE,... with FAMILY constant, cosine, wsd or two_stage and
keys steps (total steps), peak, floor, warmup (steps), decay_fraction or decay_start and shape
(linear, exponential, cosine, sqrt) for wsd, second and switch for two_stage, name; e.g.
cosine:steps=24000,peak=3e-4,floor=3e-5,warmup=2160 or
wsd:steps=24000,peak=3e-4,floor=3e-5,warmup=2160,decay_fraction=0.2,shape=linear.
Or file:PATH, a CSV with an `lr` column: the rate at every step from step 0"""

# Spec keys -> NamedSchedule fields, and the fields that hold whole numbers.
SPEC_KEYS = {
    "steps": "total_steps",
    "peak": "peak_lr",
    "floor": "floor_lr",
    "warmup": "warmup_steps",
    "decay_fraction": "decay_fraction",
    "decay_start": "decay_start",
    "shape": "decay_shape",
    "second": "second_lr",
    "switch": "switch_step",
}
WHOLE = {"total_steps", "warmup_steps", "decay_start", "switch_step"}
FAMILIES = ("constant", "cosine", "wsd", "two_stage")


def parse_spec(spec: str) -> pb.Schedule:
    """A --schedule SPEC as a Schedule message (the server checks the values)."""
    family, colon, rest = spec.partition(":")
    if not colon:
        raise UsageError(f"--schedule {spec!r}: expected FAMILY:KEY=VALUE,... or file:PATH")
    if family == "file":
        return read_rates(rest)
    if family not in FAMILIES:
        raise UsageError(f"--schedule {spec!r}: family must be one of {', '.join(FAMILIES)}, file")
    name = ""
    fields: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals:
            raise UsageError(f"--schedule {spec!r}: {item!r} is not KEY=VALUE")
        if key == "name":
            name = value
            continue
        field = SPEC_KEYS.get(key)
        if field is None:
            known = ", ".join([*SPEC_KEYS, "name"])
            raise UsageError(f"--schedule {spec!r}: unknown key {key!r}; known: {known}")
        fields[field] = value if field == "decay_shape" else _number(spec, key, value, field)
    total = fields.pop("total_steps", None)
    peak = fields.pop("peak_lr", None)
    if total is None or peak is None:
        raise UsageError(f"--schedule {spec!r}: steps and peak are required")
    return named_schedule(family, total, peak, name=name or family, **fields)


def _number(spec: str, key: str, value: str, field: str) -> float | int:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--schedule {spec!r}: {key} must be a number, got {value!r}") from None
    if field in WHOLE:
        if not number.is_integer():
            raise UsageError(f"--schedule {spec!r}: {key} must be a whole number, got {value!r}")
        return int(number)
    return number


def read_rates(path: str) -> pb.Schedule:
    """file:PATH: a CSV with an `lr` column, one row per step from step 0."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    if not rows or "lr" not in rows[0]:
        raise UsageError(f"{path}: expected a CSV with an `lr` column (the rate at every step)")
    if "step" in rows[0]:
        # The published curves log every 128th step: such a file is not a per-step schedule.
        steps = [row["step"] for row in rows]
        if steps != [str(i) for i in range(len(rows))]:
            raise UsageError(f"{path}: the `step` column must count every step from 0")
    try:
        rates = [float(row["lr"]) for row in rows]
    except (TypeError, ValueError) as error:
        raise UsageError(f"{path}: `lr` must hold numbers ({error})") from None
    return rates_schedule(rates, name=Path(path).stem)


def read_observed(path: str) -> tuple[str, NDArray[np.float64], NDArray[np.float64]]:
    """--observed CSV: `step` (counted from 0, as in the published curves) and `loss`."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        steps = np.array([float(row["step"]) for row in rows])
        loss = np.array([float(row["loss"]) for row in rows])
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path}: expected `step` and `loss` columns of numbers") from None
    # Step k counted from 0 is the loss after k + 1 steps, the curves' convention.
    return Path(path).stem, steps + 1, loss


def _law_text(law: Any) -> str:
    return f"{law.form} v{law.version} ({law.method})"


def curve(client: PlannerClient, args: argparse.Namespace) -> Output:
    messages = [parse_spec(spec) for spec in args.schedule]
    observed = [read_observed(path) for path in args.observed or []]
    answer = client.predict_curve(
        args.family, messages, points=args.points, form=args.form, version=args.version
    )
    data: dict[str, Any] = {
        "curves": [c.as_dict() for c in answer.curves],
        "law": {"form": answer.law.form, "version": answer.law.version},
    }
    if args.plot:
        from clients import plots

        try:
            plots.curves_plot(answer.curves, observed, Path(args.plot), _law_text(answer.law))
        except RuntimeError as error:
            raise UsageError(str(error)) from None
        data["plot"] = args.plot
    rows = [
        [
            c.name,
            f"{c.total_steps:,}",
            fmt.number(c.final_loss),
            fmt.number(float(c.loss.min())) if c.loss.size else "-",
        ]
        for c in answer.curves
    ]
    text = fmt.table(["SCHEDULE", "STEPS", "FINAL LOSS", "LOWEST PREDICTED"], rows)
    text += f"\nlaw: {args.family}, {_law_text(answer.law)}"
    if args.plot:
        text += f"\nwrote {args.plot}"
    return data, text


def _schedule_json(schedule: pb.Schedule) -> dict[str, Any]:
    if schedule.WhichOneof("kind") == "lrs":
        return {"name": schedule.name, "lrs": list(schedule.lrs.values)}
    named = schedule.named
    return {
        "name": schedule.name,
        "family": named.family,
        "total_steps": named.total_steps,
        "peak_lr": named.peak_lr,
        "floor_lr": named.floor_lr,
        "warmup_steps": named.warmup_steps,
        "decay_fraction": named.decay_fraction,
        "decay_shape": named.decay_shape,
    }


def _shape_text(plan: SchedulePlan, peak: float, floor: float) -> str:
    """Where the optimal schedule leaves the peak and where it nears the floor."""
    rates = np.array(plan.schedule.lrs.values)
    below = np.flatnonzero(rates < 0.99 * peak)
    after_warmup = below[below >= int(np.argmax(rates))]
    leaves = int(after_warmup[0]) + 1 if after_warmup.size else rates.size
    near = np.flatnonzero(rates <= floor + 0.05 * (peak - floor))
    nears = int(near[near >= leaves - 1][0]) + 1 if near[near >= leaves - 1].size else None
    text = f"at the peak until step {leaves:,} ({leaves / rates.size:.0%})"
    if nears is not None:
        text += f", within 5% of the floor from step {nears:,}"
    return text + f"; last rate {fmt.number(float(rates[-1]))}"


def schedule(client: PlannerClient, args: argparse.Namespace) -> Output:
    plan = client.plan_schedule(
        args.family,
        args.steps,
        args.peak,
        args.floor,
        args.warmup,
        mode=args.mode,
        decay_shape=args.shape or "",
        points=args.points,
        form=args.form,
        version=args.version,
    )
    data: dict[str, Any] = {
        "mode": args.mode,
        "final_loss": plan.final_loss,
        "cosine_final_loss": plan.cosine_final_loss,
        "gain_over_cosine": plan.gain_over_cosine,
        "decay_fraction": plan.decay_fraction,
        "solver": plan.solver,
        "schedule": _schedule_json(plan.schedule),
        "curve": plan.curve.as_dict(),
        "cosine_curve": plan.cosine_curve.as_dict(),
        "law": {"form": plan.law.form, "version": plan.law.version},
    }
    if plan.decay_fraction is not None:
        start = args.steps - round(plan.decay_fraction * args.steps)
        chosen = (
            f"WSD, {plan.schedule.named.decay_shape} decay over the last "
            f"{plan.decay_fraction:.1%} (from step {max(start, args.warmup):,})"
        )
    else:
        chosen = "non-increasing rates: " + _shape_text(plan, args.peak, args.floor)
    rows = [
        ("schedule", chosen),
        ("final loss", fmt.number(plan.final_loss)),
        ("cosine final loss", fmt.number(plan.cosine_final_loss)),
        ("gain over cosine", f"{plan.gain_over_cosine:.4g} nats/token"),
        ("solver", plan.solver),
        ("law", f"{args.family}, {_law_text(plan.law)}"),
    ]
    if args.plot:
        from clients import plots

        try:
            plots.schedule_plot(plan, Path(args.plot))
        except RuntimeError as error:
            raise UsageError(str(error)) from None
        data["plot"] = args.plot
        rows.append(("plot", args.plot))
    return data, fmt.key_values(rows)


def _points(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError(f"must be in [1, 10000], got {number}")
    return number


def register(commands: Any) -> None:
    """Add curve and schedule to the `planner` subparsers."""
    predict = commands.add_parser(
        "curve", help="predicted loss curves of learning-rate schedules (a loss-curve law)"
    )
    predict.add_argument("family")
    predict.add_argument(
        "--schedule", action="append", required=True, metavar="SPEC", help=SPEC_HELP
    )
    predict.add_argument(
        "--points", type=_points, default=0, help="evenly spaced steps per curve (default 1000)"
    )
    predict.add_argument("--plot", metavar="FILE.png", help="also draw the curves")
    predict.add_argument(
        "--observed",
        action="append",
        metavar="CSV",
        help="observed losses to draw with --plot (repeatable): a CSV with `step` (from 0) and "
        "`loss` columns, e.g. a published curve",
    )
    law_selector(predict)
    predict.set_defaults(func=curve)

    plan = commands.add_parser(
        "schedule", help="the schedule a loss-curve law prefers: best WSD decay, or optimal"
    )
    plan.add_argument("family")
    plan.add_argument("--steps", type=int, required=True, help="steps in all")
    plan.add_argument("--peak", type=float, required=True, help="peak learning rate")
    plan.add_argument("--floor", type=float, required=True, help="lowest learning rate")
    plan.add_argument("--warmup", type=int, required=True, help="linear warm-up steps")
    plan.add_argument(
        "--mode",
        choices=["wsd_decay", "optimal"],
        default="wsd_decay",
        help="wsd_decay (default): the WSD decay fraction with the lowest final loss; optimal: "
        "the loss-optimal non-increasing schedule after the warm-up",
    )
    plan.add_argument(
        "--shape",
        choices=["linear", "exponential", "cosine", "sqrt"],
        help="wsd_decay: the decay's shape (default linear)",
    )
    plan.add_argument(
        "--points", type=_points, default=0, help="points of the curves returned (default 200)"
    )
    plan.add_argument("--plot", metavar="FILE.png", help="also draw the schedules and curves")
    law_selector(plan)
    plan.set_defaults(func=schedule)
