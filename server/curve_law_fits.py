"""FitLaw for the forms fitted to more than final losses: the loss-curve laws (multi_power,
lr_annealing) from checkpoints carrying their step and learning rate, and the Step Law from
finished runs carrying their peak learning rate and batch size.

The request is checked and the data loaded before any operation starts (as for the final-loss
forms); the fit runs in the fit pool; the version is stored with the operation's completion.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from planner.curves.runs import Checkpoint, run_curves
from planner.curves.schedules import Array
from planner.errors import Infeasible, InvalidInput
from planner.fitting.chinchilla import Ensemble
from planner.fitting.curve_jobs import CURVE_FIT_FORMS, CURVE_METHODS, CurveFit, CurveFitJob
from planner.fitting.result import Diagnostics
from planner.fitting.step_law_job import STEP_LAW_METHOD, StepLawFit, StepLawJob
from planner.forms import STEP_LAW_FORM, STEP_LAW_NAMES, law_mapping
from planner_api.v1 import planner_pb2 as pb
from server.fit_pool import FitPool
from server.law_cache import LawCache
from server.operations import Progress, ReportProgress, Work
from server.schedule_decoding import schedule_lrs
from server.store import Store
from server.store.records import FitRecord, RunRecord

LAW_FIT_FORMS = (*CURVE_FIT_FORMS, STEP_LAW_FORM)
# Method names a request may give for these forms; each form has one fit.
METHOD_ALIASES = {"", "auto"}


class FitServices(Protocol):
    store: Store
    fit_pool: FitPool
    laws: LawCache


@dataclass(frozen=True)
class PreparedLawFit:
    """A validated curve or Step Law fit with its data loaded: what an operation runs."""

    family: str
    job: CurveFitJob | StepLawJob
    run_ids: list[str]
    options: dict[str, str]
    make_current: bool | None
    expected_revision: int | None

    def work(self, services: FitServices) -> Work:
        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            await execute(self, services, operation_id, report)
            return None  # the store completed the operation with the law

        return run


def check_request(request: pb.FitLawRequest, form: str) -> int:
    """Refuse what does not apply to these forms; the bootstrap resamples to run."""
    methods = CURVE_METHODS[form] if form in CURVE_FIT_FORMS else (STEP_LAW_METHOD,)
    if request.method not in METHOD_ALIASES | set(methods):
        shown = " or ".join(repr(m) for m in methods)
        raise InvalidInput("method", f"a {form} law is fitted by {shown} (or 'auto': the first)")
    if request.options.ListFields():
        raise InvalidInput(
            "options", f"checkpoint selection, tied, fixed or borrowed parameters and the "
            f"over-estimate penalty apply to the final-loss forms, not {form!r}"
        )  # fmt: skip
    if request.HasField("breaks"):
        raise InvalidInput("breaks", "applies only to the bnsl_* forms")
    if request.base:
        raise InvalidInput("base", "applies only to the data_constrained form")
    refuse_schedules(request, form)
    if form in CURVE_FIT_FORMS:
        if request.HasField("bootstrap") and request.bootstrap != 0:
            raise InvalidInput(
                "bootstrap",
                f"the {form} fit has no bootstrap (a few curves give no sample of runs to "
                f"resample); leave it unset or 0, got {request.bootstrap}",
            )
        return 0
    return request.bootstrap if request.HasField("bootstrap") else 200


def refuse_schedules(request: pb.FitLawRequest, form: str) -> None:
    """Schedules belong to the loss-curve forms only."""
    if request.schedules and form not in CURVE_FIT_FORMS:
        forms = " and ".join(CURVE_FIT_FORMS)
        raise InvalidInput("schedules", f"applies only to the {forms} forms, not {form!r}")


def decoded_schedules(request: pb.FitLawRequest) -> dict[str, Array]:
    """Each given schedule's per-step rates, by run_id (errors name `schedules[<run_id>]`)."""
    return {
        run_id: schedule_lrs(f"schedules[{run_id}]", request.schedules[run_id])
        for run_id in sorted(request.schedules)
    }


def prepare_curve_fit(
    family: str,
    form: str,
    records: list[RunRecord],
    schedules: Mapping[str, Array],
    make_current: bool | None,
    expected_revision: int | None,
    method: str = "",
) -> PreparedLawFit:
    """Curves from the family's checkpoints (CPU work: call it off the event loop); `method`
    one of CURVE_METHODS[form] ("" or "auto": the form's default)."""
    rows = [Checkpoint(r.run_id, r.step, r.lr, r.loss) for r in records]
    built = run_curves(rows, schedules)
    chosen = "" if method in METHOD_ALIASES else method
    job = CurveFitJob(form, built.curves, chosen).validated()
    given = len(built.curves) - len(built.interpolated)
    options = {
        "bootstrap": "0",
        "schedules": f"{given} given, {len(built.interpolated)} interpolated between checkpoints",
    }
    if built.skipped:
        options["skipped_checkpoints"] = f"{built.skipped} before any training (lr sum 0)"
    run_ids = [curve.name for curve in built.curves]
    return PreparedLawFit(family, job, run_ids, options, make_current, expected_revision)


def prepare_step_law_fit(
    family: str,
    records: list[RunRecord],
    resamples: int,
    seed: int,
    make_current: bool | None,
    expected_revision: int | None,
) -> PreparedLawFit:
    """The family's finished runs (rows without a step) as the Step Law's grid."""
    finished = [r for r in records if r.step is None]
    if not finished:
        raise Infeasible(
            "the family has no finished runs (rows without a step): the Step Law is fitted to "
            "each run's peak lr, batch size and final loss",
            field="runs",
        )
    for name in ("lr", "batch_tokens"):
        missing = [r.run_id for r in finished if getattr(r, name) is None]
        if missing:
            raise Infeasible(
                f"{len(missing)} finished runs lack {name} (e.g. run {missing[0]!r}); the "
                "Step Law needs each run's peak lr and batch_tokens",
                field="runs",
            )

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in finished], dtype=np.float64)

    job = StepLawJob(
        params=column("params"),
        tokens=column("tokens"),
        lr=column("lr"),
        batch_tokens=column("batch_tokens"),
        loss=column("loss"),
        resamples=resamples,
        seed=seed,
    ).validated()
    options = {"bootstrap": str(resamples), "seed": str(seed)}
    if len(finished) < len(records):
        options["ignored_checkpoint_rows"] = str(len(records) - len(finished))
    run_ids = list(dict.fromkeys(r.run_id for r in finished))
    return PreparedLawFit(family, job, run_ids, options, make_current, expected_revision)


@dataclass(frozen=True)
class _Fitted:
    """What the store keeps of a fit."""

    form: str
    parameters: dict[str, float]
    method: str
    note: str
    record: FitRecord
    warnings: tuple[str, ...]


async def execute(
    prepared: PreparedLawFit, services: FitServices, operation_id: str, report: ReportProgress
) -> None:
    """Fit in the pool and store the version with the operation's completion."""
    job = prepared.job
    report(Progress("fit", 0, 1))
    if isinstance(job, CurveFitJob):
        fitted = _curve_version(prepared, job, await services.fit_pool.run(job.fit))
        report(Progress("fit", 1, 1))
    else:
        fitted = _step_law_version(prepared, job, await services.fit_pool.run(job.fit))
        report(Progress("fit", 1, 1))
        if job.resamples:  # one vectorised call: the resamples finish with the fit
            report(Progress("bootstrap", job.resamples, job.resamples))
    make_current = not fitted.warnings if prepared.make_current is None else prepared.make_current
    report(Progress("store", 0, 1))
    try:
        await asyncio.to_thread(
            functools.partial(
                services.store.put_law,
                prepared.family,
                fitted.form,
                fitted.parameters,
                fitted.method,
                "",
                fitted.note,
                prepared.expected_revision,
                fitted.record,
                make_current,
                operation_id=operation_id,
            )
        )
    finally:  # even when the caller went away mid-write
        services.laws.invalidate(prepared.family)


def _curve_version(prepared: PreparedLawFit, job: CurveFitJob, fit: CurveFit) -> _Fitted:
    diagnostics = _diagnostics(fit.diagnostics, fit.objective, fit.warnings, 0)
    diagnostics["training_runs"] = len(prepared.run_ids)
    record = FitRecord(
        options={**prepared.options, **fit.options},
        run_ids=prepared.run_ids,
        diagnostics=diagnostics,
        intervals={},
        ensemble=[],
    )
    note = f"fitted to {fit.diagnostics.runs} checkpoints of {len(prepared.run_ids)} runs"
    return _Fitted(job.form, law_mapping(fit.law), job.method, note, record, fit.warnings)


def _step_law_version(prepared: PreparedLawFit, job: StepLawJob, fit: StepLawFit) -> _Fitted:
    cells = fit.optima.cells
    ensemble = Ensemble.of(fit.ensemble)
    # Not a loss law: no loss residuals. Its objective is the two regressions' summed squares.
    objective = cells * (fit.rmse_log_lr**2 + fit.rmse_log_batch**2)
    rows = Diagnostics(0.0, 0.0, int(job.params.size), ())
    diagnostics = _diagnostics(rows, objective, (), fit.collinear)
    diagnostics["training_runs"] = len(prepared.run_ids)
    options = {
        **prepared.options,
        "cells": f"{cells} of {cells + len(fit.optima.dropped)} (N, D) cells",
        "rmse_log_lr": f"{fit.rmse_log_lr:.4g}",
        "rmse_log_batch": f"{fit.rmse_log_batch:.4g}",
    }
    if fit.optima.dropped:
        options["dropped_cells"] = "; ".join(
            f"N {n:.4g}, D {d:.4g}: {why}" for n, d, why in fit.optima.dropped
        )
    intervals = ensemble.intervals(STEP_LAW_NAMES)
    record = FitRecord(
        options=options,
        run_ids=prepared.run_ids,
        diagnostics=diagnostics,
        intervals={name: [low, high] for name, (low, high) in intervals.items()},
        ensemble=ensemble.vectors.tolist(),
    )
    note = f"fitted to the lowest-loss runs of {cells} (N, D) cells of {job.params.size} runs"
    return _Fitted(STEP_LAW_FORM, law_mapping(fit.law), STEP_LAW_METHOD, note, record, ())


def _diagnostics(
    fitted: Diagnostics, objective: float, warnings: tuple[str, ...], failed: int
) -> dict[str, Any]:
    values: dict[str, Any] = asdict(fitted)
    values.update(
        on_bound=list(fitted.on_bound),
        objective=objective,
        failed_resamples=failed,
        warnings=list(warnings),
    )
    # JSON (and the proto's readers) have no NaN: an undefined figure is stored as 0.
    return {
        k: (v if np.isfinite(v) else 0.0) if isinstance(v, float) else v for k, v in values.items()
    }
