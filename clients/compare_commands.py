"""`planner compare FAMILY_A FAMILY_B`: two recipes' laws on one axis of compute (CompareLaws):
where their curves cross, which wins in each range, and what B needs over A's budget to match
A's loss (the compute multiplier), with bands when both laws were fitted with a bootstrap."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clients import formatting as fmt
from clients.client import PlannerClient
from clients.command_base import Output, UsageError
from clients.results import Comparison, LawSelector

UNITS = {"flops": "FLOPs", "accelerator_hours": "accelerator-hours", "params": "params"}


def compare(client: PlannerClient, args: argparse.Namespace) -> Output:
    if args.axis == "accelerator_hours" and (
        args.throughput_a is None or args.throughput_b is None
    ):
        raise UsageError("--axis accelerator_hours needs --throughput-a and --throughput-b")
    result = client.compare_laws(
        LawSelector(args.family_a, args.form_a),
        LawSelector(args.family_b, args.form_b),
        path=args.path,
        multiplier=args.multiplier,
        axis=args.axis,
        first_flops_per_second=args.throughput_a,
        second_flops_per_second=args.throughput_b,
        low=args.low,
        high=args.high,
        budgets=args.budget or (_plot_budgets(args) if args.plot else ()),
    )
    data: dict[str, Any] = result.as_dict()
    if args.plot:
        from clients import plots

        try:
            out = plots.comparison_plot(result, Path(args.plot), UNITS[args.axis])
        except RuntimeError as error:
            raise UsageError(str(error)) from None
        data["plot"] = str(out)
    return data, _text(result, args)


def _plot_budgets(args: argparse.Namespace) -> list[float]:
    """With --plot and no --budget: the multiplier at 21 points over the range, so the second
    panel has a curve (the server's default range, 1e15-1e30 FLOPs, in A's units)."""
    scale = 3600 * args.throughput_a if args.axis == "accelerator_hours" else 1.0
    default = (1e6, 1e14) if args.axis == "params" else (1e15 / scale, 1e30 / scale)
    low = args.low if args.low is not None else default[0]
    high = args.high if args.high is not None else default[1]
    if not 0 < low < high:
        return []  # the server names the bad range
    return [low * (high / low) ** (i / 20) for i in range(21)]


def _text(result: Comparison, args: argparse.Namespace) -> str:
    unit = UNITS[args.axis]
    names = {"first": result.first_family, "second": result.second_family, "tie": "tie"}
    along = f"at {fmt.number(args.multiplier)} tokens/param" if args.path == "multiplier" else ""
    lines = [
        f"A = {result.first_family} ({result.first_law.form} v{result.first_law.version}), "
        f"B = {result.second_family} ({result.second_law.form} v{result.second_law.version})"
        + (f", {along}" if along else ""),
    ]
    if result.crossovers:
        crossings = ", ".join(fmt.number(c) for c in result.crossovers)
        lines.append(f"crossover at {crossings} {unit}")
    else:
        low, high = result.ranges[0].low, result.ranges[-1].high
        lines.append(f"no crossover between {fmt.number(low)} and {fmt.number(high)} {unit}")
    lines.append(
        fmt.table(
            [f"FROM ({unit})", "TO", "LOWER LOSS"],
            [[fmt.number(r.low), fmt.number(r.high), names[r.winner]] for r in result.ranges],
        )
    )
    if result.multipliers:
        rows = []
        for m in result.multipliers:
            band = f"{fmt.number(m.band.p5)} - {fmt.number(m.band.p95)}" if m.band else "-"
            rows.append(
                [fmt.number(m.budget), fmt.number(m.first_loss), f"{m.multiplier:.4g}x", band]
            )
        lines.append("multiplier m = what B needs over A's budget to reach A's loss:")
        lines.append(fmt.table([f"BUDGET ({unit})", "A's LOSS", "m", "p5 - p95"], rows))
    if args.plot:
        lines.append(f"wrote {args.plot}")
    return "\n".join(lines)


def register(commands: Any) -> None:
    """Add `compare` to the `planner` subparsers."""
    parser = commands.add_parser(
        "compare",
        help="two recipes' laws on one compute axis: crossovers, winners, compute multiplier",
    )
    parser.add_argument("family_a", metavar="FAMILY_A")
    parser.add_argument("family_b", metavar="FAMILY_B")
    parser.add_argument("--form-a", default="", help="A's law form (default: its first)")
    parser.add_argument("--form-b", default="", help="B's law form (default: its first)")
    parser.add_argument(
        "--path",
        choices=["compute_optimal", "multiplier"],
        default="compute_optimal",
        help="how a Chinchilla-form law becomes a loss of compute: at each compute's optimal "
        "split (default), or at --multiplier tokens per parameter",
    )
    parser.add_argument("--multiplier", type=float, help="tokens per parameter (--path multiplier)")
    parser.add_argument("--axis", choices=list(UNITS), default="flops", help="default flops")
    parser.add_argument(
        "--throughput-a", type=float, metavar="FLOP/S",
        help="A's achieved FLOP/s per accelerator (peak x MFU), for --axis accelerator_hours",
    )  # fmt: skip
    parser.add_argument("--throughput-b", type=float, metavar="FLOP/S", help="B's, likewise")
    parser.add_argument("--low", type=float, help="range searched for crossovers, on the axis")
    parser.add_argument("--high", type=float, help="(default 1e15 to 1e30 FLOPs)")
    parser.add_argument(
        "--budget", type=float, action="append", metavar="X",
        help="where to report the multiplier, on the axis (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--plot", metavar="FILE.png",
        help="draw both curves (crossovers marked) and the multiplier with its band; without "
        "--budget the multiplier is asked at 21 points over the range",
    )  # fmt: skip
    # Also accepted after the command; SUPPRESS keeps a global --json given before it.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    parser.set_defaults(func=compare)
