"""Loss curves and schedules (issue 12): the Multi-Power Law fit on one model's three training
curves, a 1,000-point prediction of a 100,000-step cosine (block-compressed against the exact
sum), and the schedule searches at 24,000 steps, on Luo et al.'s published 25M curves (shared
data lr_schedules/mpl_25M). In-process, one BLAS thread (as in the server's workers).

`python -m bench.run --only curves [--quick]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from bench.domain import log
from bench.ladders import SHARED_DATA
from bench.stats import Summary, summarize
from bench.targets import TargetRow, target_table
from planner.curves import Curve, MultiPowerLaw, fit_multi_power, prediction_errors, schedules
from planner.curves.lr_annealing import AnnealingLaw
from planner.curves.optimize import (
    ScheduleProblem,
    annealing_optimum,
    best_decay_fraction,
    knot_optimum,
)
from tests.unit.test_schedules import FLOOR, PEAK, WARMUP, published_schedule

FIT_TARGET = 5.0
PREDICT_TARGET = 0.5
OPTIMAL_TARGET = 10.0
# Luo et al.'s 25M parameters at full precision (tests/unit/test_multi_power.py, FULL).
MPL_25M = MultiPowerLaw(3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812,
                        0.58279013, 0.64142257)  # fmt: skip
# The LR-annealing law fitted to the same three training curves (lambda 0.999), rounded.
ANNEALING_25M = AnnealingLaw(L0=3.068, A=0.4913, alpha=0.5715, C=0.3977, decay=0.999)
TRAIN = ("constant_24000", "cosine_24000", "wsdcon_9")
TEST = ("constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3",
        "wsdcon_18")  # fmt: skip
PUBLISHED_PRED_E = 0.00110

T = TypeVar("T")


@dataclass(frozen=True)
class Timed:
    what: str
    seconds: Summary
    note: str = ""


@dataclass(frozen=True)
class CurvesBench:
    quick: bool
    fit: Timed
    fit_pred_e: float  # of the fitted law on the six held-out schedules
    compressed: Timed
    exact: Timed
    max_relative_error: float  # compressed vs exact
    wsd: Timed
    wsd_gain: float
    optimal: Timed
    optimal_gain: float
    optimal_vs_wsd: float  # best WSD's final loss minus the optimum's
    annealing: Timed
    annealing_gain: float


def load(names: tuple[str, ...], data_dir: Path = SHARED_DATA) -> list[Curve]:
    curves = []
    for name in names:
        table = np.loadtxt(data_dir / "lr_schedules" / "mpl_25M" / f"{name}.csv",
                           delimiter=",", skiprows=1)  # fmt: skip
        curves.append(Curve.of(published_schedule(name), table[:, 0].astype(np.intp),
                               table[:, 2], name))  # fmt: skip
    return curves


def timed(what: str, call: Callable[[], T], repeats: int) -> tuple[Timed, T]:
    samples, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    assert result is not None
    return Timed(what, summarize(samples)), result


def run(quick: bool) -> CurvesBench:
    repeats = 1 if quick else 3
    with threadpool_limits(1):
        log("curves: fit_multi_power on the 25M training curves")
        train = load(TRAIN)
        fit, fitted = timed("fit_multi_power, 3 curves", lambda: fit_multi_power(train), repeats)
        pred_e = prediction_errors(fitted.law, load(TEST)).pred_e

        log("curves: 1,000 points of a 100,000-step cosine, compressed and exact")
        lrs = schedules.cosine(100_000, PEAK, FLOOR, WARMUP)
        steps = np.linspace(WARMUP, 99_999, 1000).astype(np.intp)
        compressed, grouped = timed("compressed (resolution 32)",
                                    lambda: MPL_25M.predict(lrs, steps), 3 * repeats)  # fmt: skip
        exact, summed = timed("exact sum",
                              lambda: MPL_25M.predict(lrs, steps, resolution=None), 1)  # fmt: skip
        error = float(np.max(np.abs(grouped - summed) / summed))

        log("curves: schedule searches at 24,000 steps")
        problem = ScheduleProblem(24_000, PEAK, FLOOR, WARMUP)
        wsd, choice = timed("best WSD decay fraction (linear)",
                            lambda: best_decay_fraction(MPL_25M, problem), repeats)  # fmt: skip
        optimal, found = timed("optimal schedule (multi_power)",
                               lambda: knot_optimum(MPL_25M, problem), repeats)  # fmt: skip
        annealing, convex = timed("optimal schedule (lr_annealing, convex)",
                                  lambda: annealing_optimum(ANNEALING_25M, problem),
                                  3 * repeats)  # fmt: skip
    log(f"curves: fit {fit.seconds.median:.2f} s, predict {compressed.seconds.median:.3f} s, "
        f"optimal {optimal.seconds.median:.2f} s")  # fmt: skip
    return CurvesBench(
        quick=quick,
        fit=Timed(fit.what, fit.seconds, f"{fitted.evaluations} evaluations"),
        fit_pred_e=pred_e,
        compressed=compressed,
        exact=exact,
        max_relative_error=error,
        wsd=Timed(wsd.what, wsd.seconds, f"fraction {choice.decay_fraction:.4f}"),
        wsd_gain=choice.gain_over_cosine,
        optimal=Timed(optimal.what, optimal.seconds, found.solver),
        optimal_gain=found.gain_over_cosine,
        optimal_vs_wsd=choice.final_loss - found.final_loss,
        annealing=annealing,
        annealing_gain=convex.gain_over_cosine,
    )


def _seconds(timed: Timed) -> str:
    return f"{timed.seconds.median:.3g} s"


def targets(bench: CurvesBench) -> list[TargetRow]:
    ratio = bench.exact.seconds.median / bench.compressed.seconds.median
    return [
        TargetRow(
            "`fit_multi_power`, the 3 training curves of the 25M model",
            f"< {FIT_TARGET:g} s",
            f"{_seconds(bench.fit)} (held-out PredE {bench.fit_pred_e:.5f}; published "
            f"{PUBLISHED_PRED_E})",
            bench.fit.seconds.median < FIT_TARGET,
        ),
        TargetRow(
            "Prediction, 1,000 points of a 100,000-step cosine",
            f"< {PREDICT_TARGET:g} s",
            f"{_seconds(bench.compressed)}; exact sum {_seconds(bench.exact)} ({ratio:.0f}x), "
            f"max relative difference {bench.max_relative_error:.1e}",
            bench.compressed.seconds.median < PREDICT_TARGET,
        ),
        TargetRow(
            "Loss-optimal schedule, 24,000 steps (multi_power)",
            f"< {OPTIMAL_TARGET:g} s",
            f"{_seconds(bench.optimal)}; gain over cosine {bench.optimal_gain:.4f} nats/token",
            bench.optimal.seconds.median < OPTIMAL_TARGET,
        ),
    ]


def section(bench: CurvesBench) -> list[str]:
    out = ["## Loss curves and schedules", ""]
    out += target_table(targets(bench))
    out.append("")
    out.append(
        "In-process, one BLAS thread, Luo et al.'s published 25M curves and parameters (shared "
        "data `lr_schedules/mpl_25M`); warm-up 2,160 steps to 3e-4, floor 3e-5. Schedules at "
        "24,000 steps: the best WSD decay fraction (grid of 41, then bounded Brent), the "
        "loss-optimal non-increasing schedule (L-BFGS-B over knots, from the best WSD and from "
        "cosine) and, for the LR-annealing law, its exact convex optimum (peak, then floor). "
        "Times are medians"
        + (" of one run (quick)." if bench.quick else " of 3 runs (9 for the fast ones).")
    )
    out.append("")
    out.append("| measurement | median | min | note |")
    out.append("|---|---:|---:|---|")
    for timed in (bench.fit, bench.compressed, bench.exact, bench.wsd, bench.optimal,
                  bench.annealing):  # fmt: skip
        out.append(
            f"| {timed.what} | {timed.seconds.median:.3g} s | {timed.seconds.minimum:.3g} s | "
            f"{timed.note} |"
        )
    out.append("")
    out.append(
        f"Predicted final loss gained over cosine: best linear WSD {bench.wsd_gain:.4f}, optimal "
        f"{bench.optimal_gain:.4f} ({bench.optimal_vs_wsd:.2e} below the best WSD) nats/token "
        f"(multi_power); optimal {bench.annealing_gain:.4f} (lr_annealing)."
    )
    out.append("")
    return out
