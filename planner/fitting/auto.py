"""Method "auto": choose the fit method and options that extrapolate best on these runs.

Every candidate (vpnls, huber, and huber with over-estimate penalties, each with and without
tied exponents, within the caller's own options; see candidates()) is fitted on the training
runs below a compute cut and scored on the final losses of the runs above it, for several cuts
(a rolling-origin backtest: the largest runs are held out in every fold, the next largest in
some). The lowest mean relative error wins. A default fitted
on all runs says nothing about extrapolation; this scores exactly what the law is used for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.errors import PlannerError
from planner.fitting.checkpoints import CheckpointSelection, at_final_row, final_rows
from planner.fitting.chinchilla import fit_chinchilla
from planner.fitting.data import Array, Index, Runs
from planner.fitting.options import FitOptions

METHODS = ("vpnls", "huber")
# Over-estimate penalties tried with Huber (OLMo-core's option): on Chinchilla's and OLMo's
# ladders, fits to small runs under-predict the large ones' loss less with a penalty.
PENALTIES = (2.0, 5.0)
# Fractions of the training runs (by final compute) held out, one fold each.
HOLDOUTS = (0.2, 0.3, 0.4)
# A fold needs this many training runs beyond the free parameters.
SPARE_RUNS = 3


@dataclass(frozen=True)
class Candidate:
    """A fit method with its options."""

    method: str
    options: FitOptions

    @property
    def label(self) -> str:
        tied = "+tied" if self.options.tie_exponents else ""
        penalty = self.options.overestimate_penalty
        return self.method + tied + (f"+penalty{penalty:g}" if penalty != 1.0 else "")


@dataclass(frozen=True)
class CandidateScore:
    candidate: Candidate
    mean_abs_relative_error: float  # mean over folds of each fold's mean |error|
    max_abs_relative_error: float
    failure: str = ""


@dataclass(frozen=True)
class AutoChoice:
    """The winner, every candidate's held-out error, and the folds scored (0: too few runs for
    a backtest, and the winner is the default `huber` with the caller's options)."""

    chosen: Candidate
    scores: tuple[CandidateScore, ...]
    folds: int
    note: str = ""


def candidates(options: FitOptions) -> tuple[Candidate, ...]:
    """The caller's options fitted by vpnls and huber, and by huber with each of PENALTIES,
    each with and without tied exponents. Tying is left out when the caller tied the exponents
    already or fixed both; a penalty the caller chose is the only one tried, by huber."""
    fixed = options.fixed_values
    ties = [options.tie_exponents]
    if not options.tie_exponents and not ("alpha" in fixed and "beta" in fixed):
        ties.append(True)
    if options.overestimate_penalty != 1.0:
        variants = [("huber", options.overestimate_penalty)]
    else:
        variants = [(method, 1.0) for method in METHODS]
        variants += [("huber", penalty) for penalty in PENALTIES]
    return tuple(
        Candidate(method, replace(options, tie_exponents=tie, overestimate_penalty=penalty))
        for tie in ties
        for method, penalty in variants
    )


def fold_cuts(final_compute: Array, free_parameters: int) -> list[float]:
    """Compute cuts, one per holdout fraction, that leave enough runs on both sides."""
    ordered = np.sort(final_compute)
    cuts: list[float] = []
    for holdout in HOLDOUTS:
        train = round(ordered.size * (1 - holdout))
        if train >= ordered.size:
            continue
        cut = float(ordered[train])
        below = int(np.sum(ordered < cut))  # runs at exactly the cut are held out
        if below >= free_parameters + SPARE_RUNS and below < ordered.size and cut not in cuts:
            cuts.append(cut)
    return cuts


@dataclass(frozen=True)
class Fold:
    """The selected checkpoints of the runs whose final compute is below a cut, and the rows
    (final checkpoints) of the runs at or above it."""

    train: Runs
    test: Index


def fold(runs: Runs, compute: Array, cut: float, selection: CheckpointSelection) -> Fold:
    finals = final_rows(runs)
    below = np.flatnonzero(at_final_row(runs, compute) < cut)
    return Fold(selection.select(runs.subset(below)), finals[compute[finals] >= cut])


def fold_errors(runs: Runs, split: Fold, candidate: Candidate) -> Array:
    """Relative errors on the fold's held-out rows of the candidate fitted to its training."""
    law = fit_chinchilla(split.train, candidate.method, options=candidate.options).law
    predicted = law.predict(runs.params[split.test], runs.tokens[split.test])
    return np.asarray(predicted / runs.loss[split.test] - 1.0)


def held_out_errors(
    runs: Runs, compute: Array, cut: float, candidate: Candidate, selection: CheckpointSelection
) -> Array:
    """Relative errors on the final checkpoints of runs whose final compute is >= cut, of the
    candidate fitted to the selected checkpoints of the runs below the cut."""
    return fold_errors(runs, fold(runs, compute, cut, selection), candidate)


def choose(
    runs: Runs,
    compute: Array,
    options: FitOptions,
    selection: CheckpointSelection,
    choices: tuple[Candidate, ...] | None = None,
) -> AutoChoice:
    """Score every candidate by the rolling-origin backtest and pick the best."""
    pool = choices or candidates(options)
    finals = final_rows(runs)
    cuts = fold_cuts(compute[finals], max(c.options.free_parameters for c in pool))
    if not cuts:
        fallback = next((c for c in pool if c.method == "huber"), pool[0])
        return AutoChoice(
            fallback,
            (),
            0,
            f"{finals.size} runs are too few to hold the largest out; {fallback.label} is used "
            "without a backtest",
        )
    splits = [fold(runs, compute, cut, selection) for cut in cuts]  # shared by the candidates
    scores = []
    for candidate in pool:
        try:
            errors = [np.abs(fold_errors(runs, split, candidate)) for split in splits]
        except PlannerError as error:
            scores.append(CandidateScore(candidate, float("nan"), float("nan"), error.message))
            continue
        mean = float(np.mean([e.mean() for e in errors]))
        worst = float(max(e.max() for e in errors))
        if not np.isfinite(mean):
            scores.append(CandidateScore(candidate, mean, worst, "non-finite predictions"))
            continue
        scores.append(CandidateScore(candidate, mean, worst))
    scored = [s for s in scores if not s.failure]
    if not scored:
        fallback = next((c for c in pool if c.method == "huber"), pool[0])
        return AutoChoice(
            fallback, tuple(scores), len(cuts), "no candidate could be backtested; "
            f"{fallback.label} is used without a backtest"
        )  # fmt: skip
    best = min(scored, key=lambda s: s.mean_abs_relative_error)
    return AutoChoice(best.candidate, tuple(scores), len(cuts))
