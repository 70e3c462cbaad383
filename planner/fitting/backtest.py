"""Backtests: fit on the runs below a compute cut, predict the runs above it.

A law is worth betting a cluster on only if it extrapolates; this measures how well each fit
method's law, fitted on small runs, predicts the large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.errors import Infeasible, PlannerError
from planner.fitting.chinchilla import fit_chinchilla
from planner.fitting.data import Array, Runs
from planner.laws import ChinchillaLaw
from planner.validation import positive


@dataclass(frozen=True)
class MethodBacktest:
    """One method's fit on the training runs and its relative errors on the held-out runs."""

    method: str
    law: ChinchillaLaw | None
    failure: str
    predicted: Array
    relative_error: Array

    @property
    def mean_abs_relative_error(self) -> float:
        return float(np.mean(np.abs(self.relative_error))) if self.law else float("nan")

    @property
    def max_abs_relative_error(self) -> float:
        return float(np.max(np.abs(self.relative_error))) if self.law else float("nan")


@dataclass(frozen=True)
class Backtest:
    train: NDArray[np.intp]  # indices of the training runs
    test: NDArray[np.intp]  # indices of the held-out runs
    methods: tuple[MethodBacktest, ...]


def backtest(runs: Runs, compute: Array, train_below: float, methods: tuple[str, ...]) -> Backtest:
    """Fit each method on runs with compute < train_below and score it on the others.

    A method whose fit fails reports why instead of failing the whole backtest.
    """
    cut = positive("train_below", train_below)
    train = np.flatnonzero(compute < cut)
    test = np.flatnonzero(compute >= cut)
    if test.size == 0:
        raise Infeasible(
            f"no run has compute >= train_below = {cut:g} (the largest is {compute.max():.4g}); "
            "nothing would be held out",
            field="train_below",
        )
    if train.size == 0:
        raise Infeasible(
            f"no run has compute < train_below = {cut:g} (the smallest is {compute.min():.4g}); "
            "nothing to fit on",
            field="train_below",
        )
    held_out = runs.subset(test)
    results = []
    for method in methods:
        try:
            law = fit_chinchilla(runs.subset(train), method).law
        except PlannerError as error:
            empty = np.full(test.size, np.nan)
            results.append(MethodBacktest(method, None, error.message, empty, empty))
            continue
        predicted = law.predict(held_out.params, held_out.tokens)
        error_ratio = predicted / held_out.loss - 1.0
        results.append(MethodBacktest(method, law, "", predicted, error_ratio))
    return Backtest(train=train, test=test, methods=tuple(results))
