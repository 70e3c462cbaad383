"""Evaluate predictions and plans over a bootstrap ensemble -> intervals.

A prediction gets a 95% interval; a plan gets its p5/p50/p95 band (DESIGN.md §3), field by field.

Each ensemble row is a parameter vector, columns by form (ENSEMBLE_COLUMNS): (E, A, B, alpha,
beta) for chinchilla and sparse_avg_params, with R_D* and R_N* appended for data_constrained;
(E, a, b, eta) for overtraining; (a, b, c0[, c_i, d_i, f_i]) for the bnsl_* forms.

A predicted loss gets one of two intervals:
- BAND_OF_LAW: where the law itself may lie, the 2.5 and 97.5 percentiles of the rows'
  predictions (the fit's uncertainty only).
- PREDICTION: where a new run's observed loss may land. Runs scatter about the law with
  residual standard deviation s on log loss, so the new loss is ln L = ln L_row + eps with the
  row drawn uniformly from the ensemble and eps ~ N(0, s^2), independent. That distribution is
  an equal-weight mixture of log-normals; its 2.5% and 97.5% quantiles are solved exactly (no
  sampling) by bracketing root-finding on its CDF, mean_r Phi((ln q - ln L_r) / s).
  s is the caller's: e.g. the fit's RMSE on log loss (slightly low for few runs; sqrt(SSE /
  (n - p)) corrects for the parameters fitted).

Chinchilla plans are evaluated in closed form for
all rows at once: with caps, the optimum is the free optimum clamped into the interval of N the
caps allow (see compute_optimal._clamp), which holds row by row. Repeated-data plans have no
closed form and are solved row by row. Rows for which the request has no answer (a target at or
below that row's E) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import ndtr

from planner.errors import Infeasible, InvalidInput, PlannerError
from planner.fitting.chinchilla import PARAMETER_NAMES as CHINCHILLA_COLUMNS
from planner.fitting.data_constrained import PARAMETER_NAMES as DATA_CONSTRAINED_COLUMNS
from planner.fitting.overtraining import OVERTRAINING_PARAMETERS
from planner.laws import BnslComputeLaw, ComputePowerLaw, Law
from planner.laws.bnsl import MAX_BREAKS
from planner.laws.bnsl_forms import VARIABLES as BNSL_VARIABLES
from planner.laws.bnsl_forms import columns as bnsl_columns
from planner.laws.chinchilla import ChinchillaLaw
from planner.laws.compute_power import COLUMNS as COMPUTE_POWER_COLUMNS
from planner.laws.compute_power import compute_power_losses
from planner.laws.data_constrained import DataConstrainedLaw, decayed_amount, params_supported
from planner.planning.allocation import Allocation, AllocationQuery, allocate
from planner.planning.compute_optimal import ComputeOptimalQuery
from planner.planning.inference import InferenceQuery, plan_inference
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.planning.sparsity import SparsityQuery, plan_sparsity
from planner.validation import non_negative

Array = NDArray[np.float64]
# One point (N, D or U), or many as a column vector (row_losses then gives a matrix).
Points = float | Array
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
# The two kinds of loss interval (module docstring).
BAND_OF_LAW = "band"
PREDICTION = "prediction"
# Ensemble columns of each form with fixed columns; bnsl_<variable> rows are
# bnsl_forms.columns(breaks) for the ensemble's break count.
ENSEMBLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "chinchilla": CHINCHILLA_COLUMNS,
    "sparse_avg_params": CHINCHILLA_COLUMNS,
    "data_constrained": DATA_CONSTRAINED_COLUMNS,
    "overtraining": OVERTRAINING_PARAMETERS,
    "compute_power": COMPUTE_POWER_COLUMNS,
}
BNSL_PREFIX = "bnsl_"
COMPUTE_POWER = "compute_power"


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


class LossInterval(NamedTuple):
    """A 95% interval of a predicted loss and which kind it is (BAND_OF_LAW or PREDICTION)."""

    low: float
    high: float
    kind: str


def loss_interval(
    form: str,
    ensemble: Array,
    params: float,
    tokens: float,
    unique: float | None = None,
    residual_sd: float | None = None,
    *,
    k: float | None = None,
) -> LossInterval | None:
    """95% interval of the loss of (N, D) under the ensemble of a `form` law (columns as in
    ENSEMBLE_COLUMNS). Without residual_sd (or with 0): the band of the law. With it: the
    prediction interval of a new run (module docstring). `unique` (U) matters only to
    data_constrained, whose rows then give the repetition-aware loss; `k` only to bnsl_compute,
    where it is the law's k (x = k N D). None when fewer than MIN_ROWS rows are usable."""
    losses = row_losses(form, ensemble, params, tokens, unique, k)
    if residual_sd is not None:
        non_negative("residual_sd", residual_sd)
    if not residual_sd:
        band = _interval(losses)
        return None if band is None else LossInterval(band[0], band[1], BAND_OF_LAW)
    return _prediction_interval(losses, residual_sd)


def law_loss_interval(
    law: Law,
    ensemble: Array,
    params: float,
    tokens: float,
    unique: float | None = None,
    residual_sd: float | None = None,
) -> LossInterval | None:
    """loss_interval for the ensemble of `law`: its form, and its k for the laws of compute."""
    k = law.k if isinstance(law, BnslComputeLaw | ComputePowerLaw) else None
    return loss_interval(law.form, ensemble, params, tokens, unique, residual_sd, k=k)


def chinchilla_rows(form: str, ensemble: Array) -> Array:
    """The ensemble as Chinchilla rows (E, A, B, alpha, beta), for the plan bands of any
    chinchilla-family form: overtraining rows are rewritten exactly (A = a 6^-eta, B = b 6^-eta,
    alpha = beta = 2 eta), data_constrained rows keep their Chinchilla part (no repetition).
    BNSL rows have no such form (Infeasible: the law cannot answer a plan)."""
    rows = np.asarray(ensemble, dtype=np.float64)
    if form.startswith(BNSL_PREFIX) or form == COMPUTE_POWER:
        raise Infeasible(
            f"a {form} ensemble has no Chinchilla form; planning queries need a chinchilla-family "
            "law",
            field="form",
        )
    if form not in ENSEMBLE_COLUMNS:
        raise InvalidInput("form", f"no ensemble columns known for form {form!r}")
    if rows.ndim != 2 or rows.shape[1] != len(ENSEMBLE_COLUMNS[form]):
        raise ValueError(
            f"a {form} ensemble has columns {ENSEMBLE_COLUMNS[form]}; got shape {rows.shape}"
        )
    if form != "overtraining":
        return rows[:, :5].copy()
    e, a, b, eta = rows.T
    scale = 6.0**-eta
    return np.column_stack([e, a * scale, b * scale, 2 * eta, 2 * eta])


def row_losses(
    form: str,
    ensemble: Array,
    params: Points,
    tokens: Points,
    unique: Points | None = None,
    k: float | None = None,
) -> Array:
    """The loss of (N, D) under each row's law, all rows at once (NaN or inf where a row's
    law overflows). Points given as column vectors (shape (P, 1)) give a (P, rows) matrix."""
    rows = np.asarray(ensemble, dtype=np.float64)
    if form not in ENSEMBLE_COLUMNS and not form.startswith(BNSL_PREFIX):
        raise InvalidInput("form", f"no ensemble columns known for form {form!r}")
    if form.startswith(BNSL_PREFIX):
        return _bnsl_losses(form, rows, params, tokens, k)
    if form == COMPUTE_POWER:
        if k is None:
            raise ValueError("a compute_power interval needs the law's k (C = k N D)")
        return compute_power_losses(rows, k * params * tokens)
    expected = ENSEMBLE_COLUMNS[form]
    if rows.ndim != 2 or rows.shape[1] != len(expected):
        raise ValueError(f"a {form} ensemble has columns {expected}; got shape {rows.shape}")
    with np.errstate(all="ignore"):
        if form == "overtraining":
            return _overtraining_losses(rows, params, tokens)
        if form == "data_constrained" and unique is not None:
            return _repeated_losses(rows, params, tokens, unique)
        e, a, b, alpha, beta = rows.T[:5]
        return np.asarray(e + a * params**-alpha + b * tokens**-beta)


def _overtraining_losses(rows: Array, params: Points, tokens: Points) -> Array:
    e, a, b, eta = rows.T
    compute, multiplier = 6.0 * params * tokens, tokens / params
    return np.asarray(e + (a * multiplier**eta + b * multiplier**-eta) * compute**-eta)


def _repeated_losses(rows: Array, params: Points, tokens: Points, unique: Points) -> Array:
    e, a, b, alpha, beta, r_d, r_n = rows.T
    seen = np.minimum(unique, tokens)  # U_D: the unique tokens the run sees
    supported = params_supported(seen, a, b, alpha, beta)
    n_eff = decayed_amount(params, np.minimum(params, supported), r_n)
    d_eff = decayed_amount(tokens, seen, r_d)
    return np.asarray(e + a * n_eff**-alpha + b * d_eff**-beta)


def _bnsl_losses(form: str, rows: Array, params: Points, tokens: Points, k: float | None) -> Array:
    variable = form.removeprefix(BNSL_PREFIX)
    if variable not in BNSL_VARIABLES:
        raise InvalidInput("form", f"no ensemble columns known for form {form!r}")
    breaks = (rows.shape[1] - 3) // 3 if rows.ndim == 2 else -1
    if not 0 <= breaks <= MAX_BREAKS or rows.shape[1] != len(bnsl_columns(breaks)):
        raise ValueError(
            f"a {form} ensemble has columns a, b, c0[, c_i, d_i, f_i]; got {rows.shape}"
        )
    if variable == "compute":
        if k is None:
            raise ValueError("a bnsl_compute interval needs the law's k (x = k N D)")
        x = k * params * tokens
    else:
        x = params if variable == "params" else tokens
    log_x = np.log(x)
    with np.errstate(all="ignore"):
        log_term = np.log(rows[:, 1]) - rows[:, 2] * log_x
        for i in range(breaks):
            c, d, f = rows[:, 3 + 3 * i], rows[:, 4 + 3 * i], rows[:, 5 + 3 * i]
            log_term = log_term - c * f * np.logaddexp(0.0, (log_x - np.log(d)) / f)
        return np.asarray(rows[:, 0] + np.exp(log_term))


def _prediction_interval(losses: Array, residual_sd: float) -> LossInterval | None:
    """Exact 2.5% and 97.5% quantiles of the equal-weight mixture of log-normals, one per row:
    ln L_new = ln L_row + eps, eps ~ N(0, residual_sd^2). Solved by bracketing on ln L."""
    usable = losses[np.isfinite(losses) & (losses > 0)]
    if usable.size < MIN_ROWS:
        return None
    centres = np.log(usable)

    def below(log_loss: float, share: float) -> float:
        return float(np.mean(ndtr((log_loss - centres) / residual_sd))) - share

    # 10 sd beyond the extreme rows the mixture's tails hold < 1e-20: the quantiles lie inside.
    low, high = centres.min() - 10 * residual_sd, centres.max() + 10 * residual_sd
    quantiles = [
        brentq(below, low, high, args=(share / 100,), xtol=1e-13, rtol=1e-13)
        for share in (LOW, HIGH)
    ]
    return LossInterval(float(np.exp(quantiles[0])), float(np.exp(quantiles[1])), PREDICTION)


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


def plan_intervals(
    ensemble: Array, query: ComputeOptimalQuery, target_losses: Array | None = None
) -> dict[str, Band]:
    """Bands of params, tokens, loss and flops of the query's optimum per row; for a loss
    target, `target_losses` gives each row its own (NaN: no answer for that row), as when an
    accuracy target goes through each row's own link."""
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
            target = query.target_loss if target_losses is None else target_losses
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
