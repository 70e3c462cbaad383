"""Pictures of a family's law, drawn from what the API returns (matplotlib, headless).

fit       observed vs fitted loss of every run
isoflop   loss against N along iso-compute lines, with each line's optimum
frontier  compute-optimal N*(C) and D*(C), with the bootstrap band when the law has one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clients.client import CurvePrediction, PlannerClient, SchedulePlan
from clients.results import Comparison, TaskPrediction

KINDS = ("fit", "isoflop", "frontier")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "plots need matplotlib: pip install 'compute-budget-planner[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in (
        (1e24, "Y"),
        (1e21, "Z"),
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def _si_axis(axis: Any, unit: str) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _si(v, unit)))


def plot(client: PlannerClient, family: str, kind: str, out: Path) -> Path:
    """Draw `kind` for `family` into `out` (PNG)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    if kind == "fit":
        _fit(client, family, ax)
    elif kind == "isoflop":
        _isoflop(client, family, ax)
    elif kind == "frontier":
        _frontier(client, family, ax)
    else:
        raise ValueError(f"unknown plot kind {kind!r}; known: {KINDS}")
    law = client.get_law(family)
    figure.suptitle(f"{family} — {law.form} v{law.version} ({law.method})", fontsize=11)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def _fit(client: PlannerClient, family: str, ax: Any) -> None:
    runs = list(client.list_runs(family))
    if not runs:
        raise RuntimeError(f"family {family!r} has no runs to plot")
    observed = np.array([r.loss for r in runs])
    fitted = np.array([client.predict(family, r.params, r.tokens).loss for r in runs])
    params = np.array([r.params for r in runs])
    points = ax.scatter(observed, fitted, c=np.log10(params), cmap="viridis", s=18)
    low, high = min(observed.min(), fitted.min()), max(observed.max(), fitted.max())
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="fitted = observed")
    rmse = float(np.sqrt(np.mean((np.log(fitted) - np.log(observed)) ** 2)))
    ax.set(
        xlabel="observed loss (nats/token)",
        ylabel="fitted loss (nats/token)",
        title=f"{len(runs)} runs, RMSE on log loss {rmse:.4f}",
    )
    bar = ax.figure.colorbar(points, ax=ax)
    bar.set_label("log10 params")
    ax.legend(loc="upper left")


def _isoflop(client: PlannerClient, family: str, ax: Any) -> None:
    runs = list(client.list_runs(family))
    compute = [r.flops or 6 * r.params * r.tokens for r in runs]
    low, high = (min(compute), max(compute)) if runs else (1e19, 1e23)
    budgets = np.logspace(np.log10(low), np.log10(high), 5)
    colours = _pyplot().cm.plasma(np.linspace(0.05, 0.85, len(budgets)))
    for budget, colour in zip(budgets, colours, strict=True):
        best = client.plan_compute_optimal(family, compute=float(budget))
        grid = best.params * np.logspace(-1.2, 1.2, 41)
        losses = [client.predict(family, n, budget / (6 * n)).loss for n in grid]
        ax.plot(grid, losses, color=colour, label=f"C = {_si(budget, 'FLOP')}")
        ax.scatter([best.params], [best.loss], color=colour, marker="*", s=120, zorder=3)
    near = [(r.params, r.loss) for r in runs]
    if near:
        ax.scatter(*zip(*near, strict=True), color="black", s=6, alpha=0.4, label="runs")
    ax.set_xscale("log")
    _si_axis(ax.xaxis, "")
    ax.set(
        xlabel="parameters N",
        ylabel="loss (nats/token)",
        title="IsoFLOP curves (D = C / 6N); stars mark each optimum",
    )
    ax.legend(fontsize=8)


def _frontier(client: PlannerClient, family: str, ax: Any) -> None:
    budgets = np.logspace(19, 26, 29)
    plans = [client.plan_compute_optimal(family, compute=float(c)) for c in budgets]
    for name, colour, label in (
        ("params", "tab:blue", "N* (params)"),
        ("tokens", "tab:orange", "D* (tokens)"),
    ):
        values = [getattr(p, name) for p in plans]
        ax.plot(budgets, values, color=colour, label=label)
        bands = [p.intervals[name] for p in plans if name in p.intervals]
        if len(bands) == len(plans):
            ax.fill_between(
                budgets,
                [b.p5 for b in bands],
                [b.p95 for b in bands],
                color=colour,
                alpha=0.2,
                label=f"{label}, p5-p95 over the bootstrap",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _si_axis(ax.xaxis, "FLOP")
    _si_axis(ax.yaxis, "")
    ax.set(
        xlabel="training compute C",
        ylabel="compute-optimal count",
        title="Compute-optimal frontier",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def data_mix_plot(
    budgets: list[float], candidates: list[tuple[list[str], list[float]]], chosen: float, out: Path
) -> Path:
    """Predicted error against samples seen for every candidate mix (the quality-quantity
    trade-off: the best mix moves to larger unions as the budget grows), `chosen` marked."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    errors = np.array([curve for _, curve in candidates])
    best = errors.argmin(axis=0)
    for k, (pools, curve) in enumerate(candidates):
        label = f"top {k + 1}: " + (", ".join(pools) if len(pools) <= 3 else f"{len(pools)} pools")
        ax.plot(budgets, curve, label=label)
        wins = best == k
        if wins.any():
            ax.plot(np.asarray(budgets)[wins], errors[k][wins], "o", ms=3, color="black")
    ax.axvline(chosen, color="grey", linestyle="--", label="requested budget")
    ax.set_xscale("log")
    _si_axis(ax.xaxis, "")
    ax.set(
        xlabel="samples seen",
        ylabel="predicted error",
        title="Data pools: each mix's error by budget (dots: the best mix there)",
    )
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


Observed = tuple[str, Any, Any]  # (label, steps, loss)


def curves_plot(
    curves: list[CurvePrediction], observed: list[Observed], out: Path, law: str
) -> Path:
    """Predicted loss against steps for every schedule, observed losses as points."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for curve in curves:
        ax.plot(curve.steps, curve.loss, label=f"{curve.name} (final {curve.final_loss:.4f})")
    for label, steps, loss in observed:
        ax.plot(steps, loss, "o", ms=2.5, alpha=0.6, label=f"{label} (observed)")
    _loss_axes(ax, curves)
    ax.set(title=f"Predicted loss curves — {law}")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def _loss_axes(ax: Any, curves: list[CurvePrediction]) -> None:
    # The first steps' loss is far above the rest: frame the part where schedules differ.
    tails = [c.loss[c.loss.size // 10 :] for c in curves if c.loss.size]
    if tails:
        low = min(float(t.min()) for t in tails)
        high = max(float(t.max()) for t in tails)
        pad = 0.05 * (high - low) or 0.01
        ax.set_ylim(low - pad, high + pad)
    _si_axis(ax.xaxis, "")
    ax.set(xlabel="steps", ylabel="loss (nats/token)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def schedule_plot(plan: SchedulePlan, out: Path) -> Path:
    """The chosen schedule's curve against cosine's; above it, the optimal schedule's rates
    (or the WSD decay's start)."""
    plt = _pyplot()
    figure, (rates, losses) = plt.subplots(
        2, 1, figsize=(8, 7), dpi=110, sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    chosen = plan.curve
    if plan.schedule.WhichOneof("kind") == "lrs":
        values = np.array(plan.schedule.lrs.values)
        rates.plot(np.arange(1, values.size + 1), values, color="tab:blue", label=chosen.name)
        rates.set(ylabel="learning rate")
    else:
        named = plan.schedule.named
        start = max(
            named.warmup_steps, named.total_steps - round(named.decay_fraction * named.total_steps)
        )
        rates.axvline(start, color="tab:blue", linestyle="--", label=f"{chosen.name}: decay starts")
        rates.set(ylabel="learning rate", yticks=[])
    rates.legend(fontsize=8)
    rates.grid(True, alpha=0.3)
    losses.plot(
        chosen.steps, chosen.loss, color="tab:blue", label=f"{chosen.name} ({plan.final_loss:.4f})"
    )
    losses.plot(
        plan.cosine_curve.steps,
        plan.cosine_curve.loss,
        color="tab:orange",
        label=f"cosine ({plan.cosine_final_loss:.4f})",
    )
    _loss_axes(losses, [chosen, plan.cosine_curve])
    losses.set(title=f"gain over cosine {plan.gain_over_cosine:.4f} nats/token ({plan.solver})")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def comparison_plot(result: Comparison, out: Path, unit: str) -> Path:
    """Two recipes' loss against the axis, crossovers marked; below, the compute multiplier at
    the budgets asked, with its p5-p95 band when both laws have ensembles."""
    plt = _pyplot()
    figure, (curves, ratio) = plt.subplots(
        2, 1, figsize=(8, 7.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    first, second = result.first_family, result.second_family
    curves.plot(result.axis_values, result.first_loss, color="tab:blue", label=f"A: {first}")
    curves.plot(result.axis_values, result.second_loss, color="tab:orange", label=f"B: {second}")
    for crossing in result.crossovers:
        curves.axvline(crossing, color="grey", linestyle="--", linewidth=1)
        curves.annotate(
            f"crossover {crossing:.3g}", (crossing, 0.95), xycoords=("data", "axes fraction"),
            rotation=90, ha="right", va="top", fontsize=8,
        )  # fmt: skip
    curves.set(xscale="log", ylabel="loss", title=f"{first} vs {second}")
    curves.grid(True, alpha=0.3)
    curves.legend(fontsize=8)
    shown = [m for m in result.multipliers if np.isfinite(m.multiplier)]
    if shown:
        budgets = [m.budget for m in shown]
        ratio.plot(budgets, [m.multiplier for m in shown], "o-", color="tab:green", ms=3,
                   label="m = B's compute to match A / A's")  # fmt: skip
        banded = [m for m in shown if m.band is not None and np.isfinite(m.band.p95)]
        if banded:
            ratio.fill_between(
                [m.budget for m in banded],
                [m.band.p5 for m in banded if m.band is not None],
                [m.band.p95 for m in banded if m.band is not None],
                color="tab:green", alpha=0.2, label="p5-p95 over the ensembles",
            )  # fmt: skip
        ratio.legend(fontsize=8)
    else:
        ratio.text(0.5, 0.5, "no finite multiplier at the budgets asked", ha="center",
                   transform=ratio.transAxes)  # fmt: skip
    ratio.axhline(1.0, color="grey", linewidth=1)
    for crossing in result.crossovers:  # where m passes 1
        ratio.axvline(crossing, color="grey", linestyle="--", linewidth=1)
    # Multipliers span decades on either side of 1.
    ratio.set(xscale="log", yscale="log", xlabel=unit, ylabel="multiplier (B / A)")
    ratio.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def task_accuracy_plot(
    out: Path,
    title: str,
    flops: Any,
    predictions: list[TaskPrediction],
    observed: list[tuple[float, float]],
) -> Path:
    """`planner task plot`: predicted accuracy along the step-1 law's compute-optimal path with
    its bootstrap band, and the runs' checkpoints (accuracy against k N D)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    seen = np.array(observed)
    ax.scatter(seen[:, 0], seen[:, 1], s=6, alpha=0.35, color="tab:gray", label="checkpoints")
    accuracy = [p.accuracy for p in predictions]
    ax.plot(flops, accuracy, color="tab:blue", label="predicted (compute-optimal N, D)")
    bands = [p.interval for p in predictions]
    if all(b is not None for b in bands):
        low = [b[0] for b in bands if b is not None]
        high = [b[1] for b in bands if b is not None]
        ax.fill_between(flops, low, high, color="tab:blue", alpha=0.2, label="95% band")
    floor, ceiling = predictions[0].floor, predictions[0].ceiling
    ax.axhline(floor, color="tab:red", lw=0.8, ls=":", label=f"link floor {floor:.3f}")
    ax.axhline(ceiling, color="tab:green", lw=0.8, ls=":", label=f"link ceiling {ceiling:.3f}")
    ax.set_xscale("log")
    _si_axis(ax.xaxis, "FLOP")
    ax.set_xlabel("training compute")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out
