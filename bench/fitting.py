"""Fitting benchmarks on Epoch's 240 Chinchilla points: VPNLS vs the Huber recipe, bootstrap."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from bench.domain import log
from planner.fitting import chinchilla as fitting
from planner.fitting.data import Runs
from planner.fitting.huber import DELTA, START_GRID, _objective_and_gradient, fit_huber
from planner.fitting.result import squared_error
from planner.fitting.vpnls import fit_vpnls
from tests.unit.test_fitting import epoch_240

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class FitBench:
    vpnls_seconds: float
    huber_seconds: float
    recipe_seconds: float
    recipe_starts: int
    recipe_extrapolated: bool
    vpnls_squared_error: float
    huber_squared_error: float
    recipe_squared_error: float
    bootstrap_seconds: float
    bootstrap_resamples: int
    bootstrap_processes: int


def _timed(call: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _recipe(runs: Runs, starts: np.ndarray) -> tuple[float, float]:
    """Hoffmann's recipe as published: L-BFGS from every start, one after another."""
    log_n, log_d, log_l = np.log(runs.params), np.log(runs.tokens), np.log(runs.loss)
    best = None
    begin = time.perf_counter()
    for start in starts:
        result = minimize(
            _objective_and_gradient,
            start,
            args=(log_n, log_d, log_l, DELTA),
            jac=True,
            method="L-BFGS-B",
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    a, b, e, alpha, beta = best.x
    from planner.laws import ChinchillaLaw

    law = ChinchillaLaw(
        E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta
    )
    return time.perf_counter() - begin, squared_error(law, runs)


def run(quick: bool) -> FitBench:
    runs = epoch_240(SHARED_DATA)
    log("fitting: VPNLS and the vectorised Huber recipe on 240 points")
    vpnls = fit_vpnls(runs)
    huber = fit_huber(runs)
    vpnls_seconds = _timed(lambda: fit_vpnls(runs), 1 if quick else 5)
    huber_seconds = _timed(lambda: fit_huber(runs), 1 if quick else 3)
    starts = START_GRID[:: 10 if quick else 1]
    log(f"fitting: the sequential recipe from {len(starts)} of {len(START_GRID)} starts")
    recipe_seconds, recipe_error = _recipe(runs, starts)
    if quick:
        recipe_seconds *= len(START_GRID) / len(starts)
    resamples = 20 if quick else 200
    processes = 2
    log(f"fitting: {resamples}-resample VPNLS bootstrap on {processes} processes")
    indices = fitting.resample_indices(len(runs), resamples, seed=0)
    chunks = np.array_split(indices, 4 * processes)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        pool.submit(fitting.fit_chinchilla, runs, "vpnls").result()  # start and import
        begin = time.perf_counter()
        parts = list(
            pool.map(
                fitting.bootstrap_fits,
                [runs] * len(chunks),
                ["vpnls"] * len(chunks),
                chunks,
                [vpnls.law] * len(chunks),
            )
        )
        bootstrap_seconds = time.perf_counter() - begin
    failed = fitting.Ensemble.of(np.concatenate(parts)).failed
    log(f"  bootstrap {bootstrap_seconds:.1f} s, {failed} failed resamples")
    return FitBench(
        vpnls_seconds=vpnls_seconds,
        huber_seconds=huber_seconds,
        recipe_seconds=recipe_seconds,
        recipe_starts=len(starts),
        recipe_extrapolated=quick,
        vpnls_squared_error=vpnls.objective,
        huber_squared_error=squared_error(huber.law, runs),
        recipe_squared_error=recipe_error,
        bootstrap_seconds=bootstrap_seconds,
        bootstrap_resamples=resamples,
        bootstrap_processes=processes,
    )
