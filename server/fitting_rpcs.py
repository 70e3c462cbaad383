"""Fitting RPCs: laws fitted to a family's runs (stored), and comparison fits (not stored).

Fits and bootstrap chunks run in the warm process pool; progress streams as chunks finish.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from planner.errors import Infeasible, InvalidInput, PlannerError
from planner.fitting import chinchilla as fitting
from planner.fitting.auto import AutoChoice
from planner.fitting.backtest import backtest
from planner.fitting.bnsl import fit_bnsl, fit_bnsl_auto
from planner.fitting.checkpoints import CheckpointSelection, cluster_resamples, final_rows
from planner.fitting.curve_jobs import CURVE_FIT_FORMS
from planner.fitting.data import Runs
from planner.fitting.data_constrained import identification_warnings
from planner.fitting.isoflop import fit_isoflop, nominal_budgets
from planner.fitting.jobs import METHODS as BACKTEST_METHODS
from planner.fitting.jobs import FitJob
from planner.fitting.options import PARAMETER_NAMES as OPTION_PARAMETERS
from planner.fitting.options import FitOptions
from planner.laws import (
    ChinchillaLaw,
    Law,
    parse_law,
)
from planner.laws.bnsl import MAX_BREAKS
from planner.validation import finite, positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.curve_law_fits import (
    LAW_FIT_FORMS,
    PreparedLawFit,
    check_request,
    decoded_schedules,
    prepare_curve_fit,
    prepare_step_law_fit,
    refuse_schedules,
)
from server.errors import translate_errors, translate_stream_errors
from server.operations import Progress, ReportProgress, Work
from server.refusals import Refused, overloaded, shutting_down
from server.rpc_base import Context, RpcBase, optional_field
from server.store import Conflict, NotFound
from server.store.records import INTERRUPTED, FamilyRecord, FitRecord, RunRecord
from server.task_law_fits import (
    TASK_FIT_FORM,
    PreparedTaskFit,
    check_task_request,
    prepare_task_fit,
)

# Points one FitBrokenPowerLaw call predicts (the answer stays well under a megabyte).
MAX_PREDICT_AT = 10_000


class FittingRpcs(RpcBase):
    """FitLaw, BacktestLaw, FitIsoFLOP, FitBrokenPowerLaw."""

    @translate_stream_errors
    async def FitLaw(
        self, request: pb.FitLawRequest, context: Context
    ) -> AsyncIterator[pb.FitLawEvent]:
        """The fit as an operation tied to this call: progress streams while it runs, and the
        call ending early (deadline, cancel, disconnect) cancels it."""
        prepared = await self._prepare_fit(request)
        record = await self.operations.start(
            "fit", prepared.family, request.SerializeToString(), prepared.work(self)
        )
        live = self.operations.live(record.id)
        steps = None
        if live is not None:
            live.attached = True
            steps = live.subscribe()
        try:
            async with self._default_deadline(context):
                while steps is not None and (step := await steps.get()) is not None:
                    if step.stage in ("fit", "bootstrap"):
                        yield _progress(step)
        except BaseException:
            # The caller went away or ran out of time: stop the work (workers replaced).
            await self.operations.cancel(record.id, "the FitLaw call ended before the fit did")
            raise
        if live is not None and live.error is not None:
            raise live.error
        yield pb.FitLawEvent(law=await self._operation_law(record.id))

    async def _operation_law(self, operation_id: str) -> pb.Law:
        """The law version a finished fit operation stored (its error if it has none)."""
        done = await asyncio.to_thread(self.store.get_operation, operation_id)
        if done.state == INTERRUPTED:
            raise shutting_down()
        if done.law_form is None or done.law_version is None:
            raise Refused(
                getattr(grpc.StatusCode, done.error_code or "ABORTED", grpc.StatusCode.ABORTED),
                done.error_message or f"the fit ended {done.state} without storing a law",
            )
        law = await asyncio.to_thread(
            self.store.get_law, done.family, (done.law_form,), done.law_version
        )
        return mapping.law_message(law)

    async def _prepare_fit(
        self, request: pb.FitLawRequest
    ) -> PreparedFit | PreparedLawFit | PreparedTaskFit:
        """Validate a fit request and load its data (refusing bad input before any operation
        is created)."""
        name = validation.family_name("family", request.family)
        resamples = request.bootstrap if request.HasField("bootstrap") else 200
        if not 0 <= resamples <= fitting.MAX_RESAMPLES:
            raise InvalidInput(
                "bootstrap", f"must be 0 to {fitting.MAX_RESAMPLES}, got {resamples}"
            )
        if request.seed < 0:
            raise InvalidInput("seed", f"must be >= 0, got {request.seed}")
        form = request.form or "chinchilla"
        if form.startswith(TASK_FIT_FORM) or request.HasField("task"):
            return await self._prepare_task_fit(request, name, form, resamples)
        if form in LAW_FIT_FORMS:
            return await self._prepare_law_fit(request, name, form)
        refuse_schedules(request, form)
        options, checkpoints, borrowed = await self._fit_settings(request.options, "options.")
        family, records, runs, compute = await self._family_runs(
            name, "fit", with_unique=form == "data_constrained"
        )
        expected = optional_field(request, "expected_revision")
        _check_revision(family, expected)
        base_law = None
        if form == "data_constrained" and request.base in ("", "law"):
            base_law = await asyncio.to_thread(self._current_chinchilla, name)
        job = FitJob(
            runs=runs,
            form=form,
            method=request.method or "auto",
            base=request.base,
            chinchilla=base_law[1] if base_law else None,
            options=options,
            checkpoints=checkpoints,
            compute=compute,
            breaks=optional_field(request, "breaks"),
            seed=request.seed,
            flops_per_param_token=family.flops_per_param_token,
        ).validated()
        options_used = {"bootstrap": str(resamples), "seed": str(request.seed)}
        if job.base == "law" and base_law is not None:
            options_used["base_law"] = f"chinchilla v{base_law[0]}"
        options_used.update(borrowed)
        return PreparedFit(
            family=name,
            job=job,
            records=records,
            resamples=resamples,
            options=options_used,
            make_current=optional_field(request, "make_current"),
            expected_revision=expected,
        )

    async def _prepare_law_fit(
        self, request: pb.FitLawRequest, name: str, form: str
    ) -> PreparedLawFit:
        """A loss-curve or Step Law fit: checked, its runs loaded and shaped off the loop."""
        resamples = check_request(request, form)
        schedules = {}
        if form in CURVE_FIT_FORMS:  # up to a million rates each: decoded off the loop
            schedules = await asyncio.to_thread(decoded_schedules, request)
        family, records = await self._family_records(name, "fit")
        expected = optional_field(request, "expected_revision")
        _check_revision(family, expected)
        make_current = optional_field(request, "make_current")
        if form in CURVE_FIT_FORMS:
            return await asyncio.to_thread(
                prepare_curve_fit,
                name,
                form,
                records,
                schedules,
                make_current,
                expected,
                request.method,
            )
        return await asyncio.to_thread(
            prepare_step_law_fit, name, records, resamples, request.seed, make_current, expected
        )

    async def _prepare_task_fit(
        self, request: pb.FitLawRequest, name: str, form: str, resamples: int
    ) -> PreparedTaskFit:
        """A task law's fit (server.task_law_fits): options checked before any data is read."""
        settings = check_task_request(request, form)
        family, records = await self._family_records(name, "fit")
        expected = optional_field(request, "expected_revision")
        _check_revision(family, expected)
        make_current = optional_field(request, "make_current")
        return await asyncio.to_thread(
            prepare_task_fit, name, settings, records, resamples, request.seed, make_current,
            expected,
        )  # fmt: skip

    async def _execute_fit(
        self, prepared: PreparedFit, operation_id: str, report: ReportProgress
    ) -> None:
        """Fit, bootstrap and store the law; the store marks the operation SUCCEEDED in the same
        transaction as the law, so a retried operation never stores a second version."""
        job, runs, resamples = prepared.job, prepared.job.runs, prepared.resamples
        report(Progress("fit", 0, 1))
        fit = await self.fit_pool.run(job.fit)
        report(Progress("fit", 1, 1))
        parts = []
        refit = job.resolved(fit)
        async for done, part in self._bootstrap(refit, resamples, job.seed, fit.law):
            parts.append(part)
            report(Progress("bootstrap", done, resamples))
        names = job.parameter_names(fit.law)
        ensemble = fitting.Ensemble.of(
            np.concatenate(parts) if parts else np.empty((0, len(names)))
        )
        intervals = ensemble.intervals(names)
        warnings = list(fit.warnings)
        if job.form == "data_constrained":
            warnings += identification_warnings(intervals)
        selected = job.checkpoints.rows(runs)
        diagnostics: dict[str, Any] = asdict(fit.diagnostics)
        diagnostics.update(
            on_bound=list(fit.diagnostics.on_bound),
            objective=fit.objective,
            failed_resamples=ensemble.failed,
            warnings=warnings,
            training_runs=int(np.unique(runs.group_codes[selected]).size),
        )
        if fit.choice is not None:
            diagnostics["auto"] = _auto_choice(fit.choice)
        diagnostics = {k: _finite_or_zero(v) if isinstance(v, float) else v
                       for k, v in diagnostics.items()}  # fmt: skip
        options_used = {**prepared.options, **fit.options}
        record = FitRecord(
            options=options_used,
            run_ids=list(dict.fromkeys(prepared.records[i].run_id for i in selected)),
            diagnostics=diagnostics,
            intervals={k: [lo, hi] for k, (lo, hi) in intervals.items()},
            ensemble=ensemble.vectors.tolist(),
        )
        make_current = not warnings if prepared.make_current is None else prepared.make_current
        report(Progress("store", 0, 1))
        try:
            await asyncio.to_thread(
                functools.partial(
                    self.store.put_law,
                    prepared.family,
                    job.form,
                    fit.law.to_mapping(),
                    fit.method,
                    "",
                    f"fitted to {len(selected)} rows of {diagnostics['training_runs']} runs",
                    prepared.expected_revision,
                    record,
                    make_current,
                    operation_id=operation_id,
                )
            )
        finally:  # even when the caller went away mid-write
            self.laws.invalidate(prepared.family)

    @translate_errors
    async def BacktestLaw(
        self, request: pb.BacktestLawRequest, context: Context
    ) -> pb.BacktestLawResponse:
        prepared = await self._prepare_backtest(request)
        async with self._default_deadline(context):
            return await self._execute_backtest(prepared)

    async def _prepare_backtest(self, request: pb.BacktestLawRequest) -> PreparedBacktest:
        name = validation.family_name("family", request.family)
        methods = (
            tuple(_fit_method(f"methods[{i}]", m) for i, m in enumerate(request.methods))
            or BACKTEST_METHODS
        )
        if len(set(methods)) != len(methods):
            raise InvalidInput("methods", f"names a method twice: {list(methods)[:10]}")
        cut = positive("train_below", request.train_below)
        options, checkpoints, _ = await self._fit_settings(request.options, "options.")
        _, records, runs, compute = await self._family_runs(name, "backtest")
        return PreparedBacktest(name, records, runs, compute, cut, methods, options, checkpoints)

    async def _execute_backtest(self, prepared: PreparedBacktest) -> pb.BacktestLawResponse:
        records, compute = prepared.records, prepared.compute
        result = await self.fit_pool.run(
            backtest,
            prepared.runs,
            compute,
            prepared.cut,
            prepared.methods,
            prepared.options,
            prepared.checkpoints,
        )
        order = result.test[np.argsort(compute[result.test])]
        position = {int(index): i for i, index in enumerate(result.test)}
        response = pb.BacktestLawResponse(
            train_runs=result.train_runs, test_runs=int(result.test.size)
        )
        for scored in result.methods:
            entry = response.methods.add(
                method=scored.method, failure=scored.failure, chosen=scored.chosen
            )
            if scored.law is None:
                continue
            entry.parameters.update(scored.law.to_mapping())
            entry.mean_abs_relative_error = scored.mean_abs_relative_error
            entry.max_abs_relative_error = scored.max_abs_relative_error
            for index in order:
                i = position[int(index)]
                entry.runs.add(
                    run_id=records[index].run_id,
                    flops=float(compute[index]),
                    observed_loss=records[index].loss,
                    predicted_loss=float(scored.predicted[i]),
                    relative_error=float(scored.relative_error[i]),
                )
        return response

    async def _family_runs(
        self, name: str, purpose: str, with_unique: bool = False, finals_only: bool = False
    ) -> tuple[FamilyRecord, list[RunRecord], Runs, NDArray[np.float64]]:
        """The family, its runs (records and arrays) and each row's compute; FAILED_PRECONDITION
        when it has none. `finals_only`: each run's last checkpoint only."""
        family, records = await self._family_records(name, purpose)
        runs, compute = _runs_of(records, family.flops_per_param_token, with_unique)
        if finals_only:
            finals = final_rows(runs)
            return family, [records[i] for i in finals], runs.subset(finals), compute[finals]
        return family, records, runs, compute

    async def _family_records(
        self, name: str, purpose: str
    ) -> tuple[FamilyRecord, list[RunRecord]]:
        """The family and its stored rows; FAILED_PRECONDITION when it has none,
        RESOURCE_EXHAUSTED beyond the rows a fit may read."""
        family = await asyncio.to_thread(self.store.get_family, name)
        if family.run_count > self.max_runs_per_fit:
            raise overloaded(
                f"family {name!r} has {family.run_count} rows; a {purpose} reads at most "
                f"{self.max_runs_per_fit} (PLANNER_MAX_RUNS_PER_FIT): delete runs or fit a "
                "family holding a subset",
                retry_after=None,
            )
        records = await asyncio.to_thread(self.store.all_runs, name)
        if not records:
            raise Infeasible(f"family {name!r} has no runs to {purpose}", field="family")
        return family, records

    async def _fit_settings(
        self, message: pb.FitOptions, prefix: str
    ) -> tuple[FitOptions, CheckpointSelection, dict[str, str]]:
        """Domain fit options from the request's, with borrowed parameters resolved, and where
        they were borrowed from (stored with the version)."""
        fixed = {
            name: finite(f"{prefix}fixed.{name}", value) for name, value in message.fixed.items()
        }
        provenance: dict[str, str] = {}
        if message.HasField("borrow_from"):
            borrowed, source = await self._borrow(message, prefix)
            provenance["borrowed_from"] = f"{source}: {', '.join(borrowed)}"
            for name, value in borrowed.items():
                if name in fixed:
                    raise InvalidInput(
                        f"{prefix}borrow",
                        f"{name} is both fixed and borrowed; give it one way",
                    )
                fixed[name] = value
        elif message.borrow:
            raise InvalidInput(f"{prefix}borrow", "names parameters but borrow_from is not set")
        penalty = finite(f"{prefix}overestimate_penalty", message.overestimate_penalty) or 1.0
        try:
            options = FitOptions.of(message.tie_exponents, fixed, penalty)
        except InvalidInput as exc:  # the domain names fields inside the options message
            raise InvalidInput(f"{prefix}{exc.field}", exc.reason) from exc
        mode = message.checkpoints or "final"
        fraction = finite(f"{prefix}after_fraction", message.after_fraction)
        return options, CheckpointSelection(mode, fraction).validated(), provenance

    async def _borrow(self, message: pb.FitOptions, prefix: str) -> tuple[dict[str, float], str]:
        """The parameters named in `borrow` (all five when empty) of the borrow_from law, and
        which version that was."""
        names = list(message.borrow) or list(OPTION_PARAMETERS)
        if len(set(names)) != len(names):
            raise InvalidInput(f"{prefix}borrow", f"names a parameter twice: {names[:10]}")
        for index, name in enumerate(names):
            if name not in OPTION_PARAMETERS:
                raise InvalidInput(
                    f"{prefix}borrow[{index}]",
                    f"unknown parameter {name!r}; borrowable: {list(OPTION_PARAMETERS)}",
                )
        record = await asyncio.to_thread(
            self._law_record, message.borrow_from, f"{prefix}borrow_from."
        )
        try:
            source = parse_law(record.form, record.parameters).as_chinchilla()
        except PlannerError as exc:
            raise Infeasible(
                f"{prefix}borrow_from: the {record.form} law has no Chinchilla "
                f"parameters to borrow ({exc.message})",
                field=f"{prefix}borrow_from",
            ) from exc
        values = source.to_mapping()
        label = f"{record.family} {record.form} v{record.version}"
        return {name: values[name] for name in names}, label

    @translate_errors
    async def FitIsoFLOP(
        self, request: pb.FitIsoFLOPRequest, context: Context
    ) -> pb.FitIsoFLOPResponse:
        name = validation.family_name("family", request.family)
        # A profile point is a finished run: its last checkpoint.
        family, records, runs, compute = await self._family_runs(name, "fit", finals_only=True)
        k = family.flops_per_param_token
        if all(r.flops is not None for r in records):
            budgets = compute
        else:
            budgets = nominal_budgets(k * runs.params * runs.tokens)
        async with self._default_deadline(context):
            fit = await self.fit_pool.run(
                fit_isoflop, runs.params, runs.tokens, runs.loss, budgets, k
            )
        response = pb.FitIsoFLOPResponse(
            params_exponent=fit.params_exponent,
            params_coefficient=fit.params_coefficient,
            tokens_exponent=fit.tokens_exponent,
            tokens_coefficient=fit.tokens_coefficient,
            caveat=fit.caveat,
        )
        for budget, params in zip(fit.budgets, fit.optimal_params, strict=True):
            response.vertices.add(
                flops=budget,
                params=params,
                tokens=budget / (k * params),
                runs=int(np.sum(budgets == budget)),
            )
        return response

    @translate_errors
    async def FitBrokenPowerLaw(
        self, request: pb.FitBrokenPowerLawRequest, context: Context
    ) -> pb.FitBrokenPowerLawResponse:
        name = validation.family_name("family", request.family)
        against = request.against or "compute"
        if against not in ("compute", "params", "tokens"):
            raise InvalidInput("against", f"must be compute, params or tokens, got {against!r}")
        breaks = request.breaks if request.HasField("breaks") else None
        if breaks is not None and not 0 <= breaks <= MAX_BREAKS:
            raise InvalidInput("breaks", f"must be 0 to {MAX_BREAKS}, got {breaks}")
        if len(request.predict_at) > MAX_PREDICT_AT:
            raise InvalidInput(
                "predict_at",
                f"has {len(request.predict_at)} values; at most {MAX_PREDICT_AT} per request",
            )
        points = [positive(f"predict_at[{i}]", x) for i, x in enumerate(request.predict_at)]
        if request.seed < 0:
            raise InvalidInput("seed", f"must be >= 0, got {request.seed}")
        _, records, runs, compute = await self._family_runs(name, "fit", finals_only=True)
        x = {"compute": compute, "params": runs.params, "tokens": runs.tokens}[against]
        response = pb.FitBrokenPowerLawResponse(runs=len(records))
        async with self._default_deadline(context):
            if breaks is None:
                choice = await self.fit_pool.run(
                    fit_bnsl_auto, x, runs.loss, MAX_BREAKS, request.seed
                )
                law = choice.law
                for count, error in choice.held_out_error.items():
                    response.held_out_error[count] = error
            else:
                law = await self.fit_pool.run(fit_bnsl, x, runs.loss, breaks, request.seed)
        response.parameters.update(law.to_mapping())
        response.breaks = len(law.breaks)
        response.fitted_up_to = float(law.fitted_up_to or x.max())
        for point, value in zip(points, law.predict(points) if points else [], strict=True):
            response.predictions.add(
                x=point, value=float(value), extrapolation=law.extrapolates(point)
            )
        return response

    async def _bootstrap(
        self, job: FitJob, resamples: int, seed: int, start: Law
    ) -> AsyncIterator[tuple[int, NDArray[np.float64]]]:
        """Resample training runs (each with all its selected checkpoints) with replacement and
        refit, in chunks spread over the pool; yields (resamples done, that chunk's parameter
        vectors) as chunks finish."""
        if resamples == 0:
            return
        samples = cluster_resamples(job.selected, resamples, seed)
        count = min(resamples, max(4 * self.fit_pool.processes, resamples // 10))
        pending = [
            asyncio.ensure_future(
                self.fit_pool.run(job.bootstrap, [samples[i] for i in chunk], start)
            )
            for chunk in np.array_split(np.arange(resamples), count)
        ]
        done = 0
        try:
            for finished in asyncio.as_completed(pending):
                part = await finished
                done += len(part)
                yield done, part
        finally:
            for future in pending:
                future.cancel()

    def _current_chinchilla(self, name: str) -> tuple[int, ChinchillaLaw] | None:
        """(version, law) of the family's current chinchilla law, or None if it has none."""
        try:
            record = self.store.get_law(name, ("chinchilla",), 0)
        except NotFound as exc:
            if exc.field == "family":
                raise
            return None
        law = parse_law(record.form, record.parameters, "law.parameters")
        assert isinstance(law, ChinchillaLaw)
        return record.version, law


def _check_revision(family: FamilyRecord, expected: int | None) -> None:
    """Refused now rather than after minutes of fitting (the store checks again)."""
    if expected is not None and family.revision != expected:
        raise Conflict(
            f"family {family.name!r} is at revision {family.revision}, not the expected "
            f"{expected}; re-read it and retry",
            field="expected_revision",
        )


def _runs_of(
    records: list[RunRecord], k: float, with_unique: bool = False
) -> tuple[Runs, NDArray[np.float64]]:
    """The rows as arrays (rows sharing a run_id are checkpoints of one run) and each row's
    training compute (its flops, else k N D); `with_unique` requires every unique_tokens."""
    unique: list[float] | None = None
    if with_unique:
        missing = [r.run_id for r in records if r.unique_tokens is None]
        if missing:
            raise Infeasible(
                f"{len(missing)} runs lack unique_tokens (e.g. {missing[0]!r}); the "
                "data_constrained law needs U for every run",
                field="runs",
            )
        unique = [r.unique_tokens for r in records if r.unique_tokens is not None]
    weights = None
    if any(r.weight is not None for r in records):
        weights = [1.0 if r.weight is None else r.weight for r in records]
    runs = Runs.of(
        [r.params for r in records],
        [r.tokens for r in records],
        [r.loss for r in records],
        unique,
        groups=[r.run_id for r in records] if records else None,
        weights=weights,
    )
    compute = np.array(
        [r.flops if r.flops is not None else k * r.params * r.tokens for r in records],
        dtype=np.float64,
    )
    return runs, compute


def _fit_method(field: str, method: str) -> str:
    if method not in BACKTEST_METHODS:
        raise InvalidInput(field, f"unknown fit method {method!r}; known: {BACKTEST_METHODS}")
    return method


def _auto_choice(choice: AutoChoice) -> dict[str, Any]:
    """AutoChoice as the stored diagnostics' `auto` (the shape of pb.AutoChoice)."""
    return {
        "chosen": choice.chosen.label,
        "folds": choice.folds,
        "note": choice.note,
        "candidates": [
            {
                "candidate": score.candidate.label,
                "mean_abs_relative_error": _finite_or_zero(score.mean_abs_relative_error),
                "max_abs_relative_error": _finite_or_zero(score.max_abs_relative_error),
                "failure": score.failure,
            }
            for score in choice.scores
        ],
    }


def _finite_or_zero(value: float) -> float:
    """JSON (and the proto's readers) have no NaN: an undefined figure is stored as 0."""
    return value if np.isfinite(value) else 0.0


def _progress(progress: Progress) -> pb.FitLawEvent:
    return pb.FitLawEvent(
        progress=pb.FitProgress(stage=progress.stage, done=progress.done, total=progress.total)
    )


@dataclass(frozen=True)
class PreparedFit:
    """A validated fit request with its data loaded: what an operation runs."""

    family: str
    job: FitJob
    records: list[RunRecord]
    resamples: int
    options: dict[str, str]
    make_current: bool | None
    expected_revision: int | None

    def work(self, rpcs: FittingRpcs) -> Work:
        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            await rpcs._execute_fit(self, operation_id, report)
            return None  # the store completed the operation with the law

        return run


@dataclass(frozen=True)
class PreparedBacktest:
    """A validated backtest request with its data loaded."""

    family: str
    records: list[RunRecord]
    runs: Runs
    compute: NDArray[np.float64]
    cut: float
    methods: tuple[str, ...]
    options: FitOptions
    checkpoints: CheckpointSelection

    def work(self, rpcs: FittingRpcs) -> Work:
        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            report(Progress("backtest", 0, 1))
            response = await rpcs._execute_backtest(self)
            return response.SerializeToString()

        return run
