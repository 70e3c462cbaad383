"""Evaluate predictions and plans over a bootstrap ensemble -> intervals.

A prediction gets a 95% interval; a plan gets its p5/p50/p95 band (DESIGN.md §3), field by field.

Each ensemble row is a parameter vector: (E, A, B, alpha, beta) for Chinchilla, with R_D* and
R_N* appended for the data-constrained form. Chinchilla plans are evaluated in closed form for
all rows at once: with caps, the optimum is the free optimum clamped into the interval of N the
caps allow (see compute_optimal._clamp), which holds row by row. Repeated-data plans have no
closed form and are solved row by row. Rows for which the request has no answer (a target at or
below that row's E) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from planner.errors import PlannerError
from planner.fitting.data_constrained import PARAMETER_NAMES as DATA_CONSTRAINED_COLUMNS
from planner.laws.chinchilla import ChinchillaLaw
from planner.laws.data_constrained import DataConstrainedLaw, decayed_amount, params_supported
from planner.planning.allocation import Allocation, AllocationQuery, allocate
from planner.planning.compute_optimal import ComputeOptimalQuery
from planner.planning.inference import InferenceQuery, plan_inference
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.planning.sparsity import SparsityQuery, plan_sparsity

Array = NDArray[np.float64]
T = TypeVar("T")
P = TypeVar("P")
# Percentiles of a 95% interval.
LOW, HIGH = 2.5, 97.5
# Percentiles of a plan's band.
BAND = (5.0, 50.0, 95.0)
# (p5, p50, p95) of one field of a plan over the ensemble.
Band = tuple[float, float, float]
# Fewer usable rows than this give no interval rather than a misleading one.
MIN_ROWS = 10


def _interval(values: Array) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < MIN_ROWS:
        return None
    low, high = np.percentile(finite, [LOW, HIGH])
    return float(low), float(high)


def _band(values: Array) -> Band | None:
    finite = values[np.isfinite(values)]
    if finite.size < MIN_ROWS:
        return None
    low, median, high = np.percentile(finite, BAND)
    return float(low), float(median), float(high)


def bands_of(plans: list[object], names: tuple[str, ...]) -> dict[str, Band]:
    """The band of each named attribute over the plans that have it."""
    bands = {}
    for name in names:
        band = _band(np.array([getattr(p, name) for p in plans], dtype=np.float64))
        if band is not None:
            bands[name] = band
    return bands


def loss_interval(
    ensemble: Array, params: float, tokens: float, unique_tokens: float | None = None
) -> tuple[float, float] | None:
    """95% interval of the predicted loss of (N, D) over the ensemble; with U (and R* columns
    in the ensemble) the repetition-aware loss."""
    e, a, b, alpha, beta = ensemble.T[:5]
    with np.errstate(all="ignore"):
        if unique_tokens is None or ensemble.shape[1] < 7:
            return _interval(e + a * params**-alpha + b * tokens**-beta)
        r_d, r_n = ensemble.T[5:7]
        seen = min(unique_tokens, tokens)  # U_D: the unique tokens the run sees
        supported = params_supported(seen, a, b, alpha, beta)
        n_eff = decayed_amount(params, np.minimum(params, supported), r_n)
        d_eff = decayed_amount(tokens, seen, r_d)
        return _interval(e + a * n_eff**-alpha + b * d_eff**-beta)


def _solved(rows: Iterable[T], solve: Callable[[T], P]) -> list[P]:
    """solve(row) for every row; rows that are no valid law (ValueError) or for which the
    request has no answer (PlannerError) are left out."""
    plans = []
    for row in rows:
        try:
            plans.append(solve(row))
        except (PlannerError, ValueError):
            continue
    return plans


def _chinchilla(row: Array) -> ChinchillaLaw:
    e, a, b, alpha, beta = (float(v) for v in row[:5])
    return ChinchillaLaw(E=e, A=a, B=b, alpha=alpha, beta=beta)


def _data_constrained(row: Array) -> DataConstrainedLaw:
    return DataConstrainedLaw(
        **dict(zip(DATA_CONSTRAINED_COLUMNS, (float(v) for v in row), strict=True))
    )


def repeated_plan_intervals(ensemble: Array, query: RepeatedDataQuery) -> dict[str, Band]:
    """Bands of params, tokens, loss, flops and epochs of the repeated-data optimum, solving
    each row's law (rows the request has no answer for are left out)."""
    plans = _solved(
        ensemble, lambda row: solve_repeated(replace(query, law=_data_constrained(row)))
    )
    return bands_of(list(plans), ("params", "tokens", "loss", "flops", "epochs"))


def inference_intervals(ensemble: Array, query: InferenceQuery) -> dict[str, Band]:
    """Bands of the inference-aware plan's params, tokens, loss, total FLOPs and cost, each
    row solved exactly on its own (the scalar finish alone; no GP per row)."""
    plans = _solved(
        ensemble,
        lambda row: plan_inference(replace(query, law=_chinchilla(row)), check_with_gp=False).plan,
    )
    return bands_of(list(plans), ("params", "tokens", "loss", "total_flops", "cost"))


def sparsity_intervals(ensemble: Array, query: SparsityQuery) -> dict[str, Band]:
    """Bands of the sparse pre-training plan, each row's law planned on its own."""
    plans = _solved(ensemble, lambda row: plan_sparsity(replace(query, law=_chinchilla(row))))
    names = ("dense_params", "average_params", "final_params", "final_sparsity", "tokens", "loss")
    return bands_of(list(plans), names)


def allocation_intervals(
    ensembles: list[Array | None], query: AllocationQuery
) -> list[dict[str, Band]]:
    """Per job, bands of its flops, params, tokens and loss with the whole split re-solved for
    each row: row r of every job's ensemble together (jobs without one keep their law).
    Families are fitted separately, so pairing rows by index samples their joint spread."""
    sized = [e for e in ensembles if e is not None]
    if not sized:
        return [{} for _ in query.jobs]

    def split(r: int) -> Allocation:
        jobs = tuple(
            job if e is None else replace(job, law=_chinchilla(e[r]))
            for job, e in zip(query.jobs, ensembles, strict=True)
        )
        return allocate(replace(query, jobs=jobs), check_with_gp=False)

    splits = _solved(range(min(len(e) for e in sized)), split)
    return [
        bands_of([s.jobs[i] for s in splits], ("flops", "params", "tokens", "loss"))
        for i in range(len(query.jobs))
    ]


def plan_intervals(ensemble: Array, query: ComputeOptimalQuery) -> dict[str, Band]:
    """Bands of params, tokens, loss and flops of the query's optimum per row."""
    query = query.validated()
    e, a, b, alpha, beta = ensemble.T[:5]
    k = query.flops_per_param_token
    n_cap = query.caps.max_params
    d_cap_entry = query.caps.tokens_cap()
    d_cap = None if d_cap_entry is None else d_cap_entry[0]
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    exponent_n = beta / (alpha + beta)
    with np.errstate(all="ignore"):
        if query.compute is not None:
            compute = np.full_like(e, query.compute)
        else:
            assert query.target_loss is not None
            target = query.target_loss
            coefficient = a * g**-alpha + b * g**beta
            ratio = np.where(target > e, (target - e) / coefficient, np.nan)
            compute = k * ratio ** (-(alpha + beta) / (alpha * beta))
        params = g * (compute / k) ** exponent_n
        if query.compute is not None:
            low = None if d_cap is None else compute / (k * d_cap)
            params = _clip(params, low, n_cap)
            tokens = compute / (k * params)
            if d_cap is not None:
                tokens = np.minimum(tokens, d_cap)
        else:
            headroom_d = target - e - (0.0 if d_cap is None else b * d_cap**-beta)
            low = None if d_cap is None else (a / headroom_d) ** (1.0 / alpha)
            params = _clip(
                params, np.where(headroom_d > 0, low, np.nan) if low is not None else None, n_cap
            )
            tokens = (b / (target - e - a * params**-alpha)) ** (1.0 / beta)
            compute = k * params * tokens
        loss = e + a * params**-alpha + b * tokens**-beta
    fields = {"params": params, "tokens": tokens, "loss": loss, "flops": k * params * tokens}
    # A row counts only if every field of its plan exists (the request has an answer there).
    usable = np.ones_like(e, dtype=bool)
    for values in fields.values():
        usable &= np.isfinite(values) & (values > 0)
    bands = {}
    for name, values in fields.items():
        band = _band(values[usable])
        if band is not None:
            bands[name] = band
    return bands


def _clip(values: Array, low: Array | float | None, high: float | None) -> Array:
    if high is not None:
        values = np.minimum(values, high)
    if low is not None:
        values = np.maximum(values, low)
    return values
