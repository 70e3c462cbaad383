"""PlannerService: validate, call the store or the domain, map the answer back.

Store calls run in threads (SQL is blocking I/O); closed forms run inline (microseconds); GP
solves go to the warm process pool.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from planner.errors import Infeasible, InvalidInput
from planner.fitting import chinchilla as fitting
from planner.fitting.backtest import backtest
from planner.fitting.bnsl import fit_bnsl, fit_bnsl_auto
from planner.fitting.data import Runs
from planner.fitting.isoflop import fit_isoflop, nominal_budgets
from planner.fitting.jobs import FitJob
from planner.laws import (
    DEFAULT_FORM_ORDER,
    FORMS,
    ChinchillaLaw,
    DataConstrainedLaw,
    Law,
    parse_law,
    predict_loss,
)
from planner.laws.bnsl import MAX_BREAKS
from planner.planning import compute_optimal
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery
from planner.planning.inference import Costs, InferenceQuery, plan_inference
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.uncertainty import loss_interval, plan_intervals, repeated_plan_intervals
from planner.validation import optional_positive, positive
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc
from server import mapping, validation
from server.batched_solver import BatchedSolver
from server.errors import translate_errors, translate_stream_errors
from server.law_cache import LawCache, ResolvedLaw
from server.solver_pool import SolverPool
from server.store import NotFound, Store, StoreError
from server.store.records import FitRecord, LawRecord, RunRecord

# grpc ships no type information; handlers take its aio ServicerContext.
Context: TypeAlias = Any


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


class PlannerService(pb_grpc.PlannerServiceServicer):
    """The one service of planner.v1."""

    def __init__(
        self, store: Store, pool: SolverPool, max_runs_per_request: int, laws: LawCache
    ) -> None:
        self.store = store
        self.pool = pool
        self.max_runs = max_runs_per_request
        self.laws = laws
        self.solver = BatchedSolver(pool)

    # -- families -----------------------------------------------------------------------------

    @translate_errors
    async def CreateFamily(
        self, request: pb.CreateFamilyRequest, context: Context
    ) -> pb.CreateFamilyResponse:
        family = request.family
        name = validation.family_name("family.name", family.name)
        text = validation.description("family.description", family.description)
        conv = validation.convention("family.param_convention", family.param_convention)
        k = validation.flops_per_param_token(
            "family.flops_per_param_token", family.flops_per_param_token
        )
        record = await asyncio.to_thread(self.store.create_family, name, text, conv, k)
        self.laws.invalidate(name)
        return pb.CreateFamilyResponse(family=mapping.family_message(record))

    @translate_errors
    async def GetFamily(
        self, request: pb.GetFamilyRequest, context: Context
    ) -> pb.GetFamilyResponse:
        name = validation.family_name("name", request.name)
        record = await asyncio.to_thread(self.store.get_family, name)
        return pb.GetFamilyResponse(family=mapping.family_message(record))

    @translate_errors
    async def ListFamilies(
        self, request: pb.ListFamiliesRequest, context: Context
    ) -> pb.ListFamiliesResponse:
        size = validation.page_size("page_size", request.page_size, 100, 1000)
        after = validation.decode_page_token("page_token", request.page_token)
        if after is not None and not isinstance(after, str):
            raise InvalidInput("page_token", "is not a token of ListFamilies")
        records = await asyncio.to_thread(self.store.list_families, size + 1, after)
        more = len(records) > size
        records = records[:size]
        token = validation.encode_page_token(records[-1].name) if more else ""
        return pb.ListFamiliesResponse(
            families=[mapping.family_message(r) for r in records], next_page_token=token
        )

    @translate_errors
    async def DeleteFamily(
        self, request: pb.DeleteFamilyRequest, context: Context
    ) -> pb.DeleteFamilyResponse:
        name = validation.family_name("name", request.name)
        expected = _optional(request, "expected_revision")
        try:
            await asyncio.to_thread(self.store.delete_family, name, expected)
        finally:
            self.laws.invalidate(name)
        return pb.DeleteFamilyResponse()

    # -- runs ---------------------------------------------------------------------------------

    @translate_errors
    async def AddRuns(self, request: pb.AddRunsRequest, context: Context) -> pb.AddRunsResponse:
        name = validation.family_name("family", request.family)
        records = validation.runs_batch("runs", list(request.runs), self.max_runs)
        expected = _optional(request, "expected_revision")
        added, unchanged, family = await asyncio.to_thread(
            self.store.add_runs, name, records, expected
        )
        return pb.AddRunsResponse(
            added=added,
            unchanged=unchanged + len(request.runs) - len(records),
            family=mapping.family_message(family),
        )

    @translate_errors
    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        name = validation.family_name("family", request.family)
        size = validation.page_size("page_size", request.page_size, 1000, 10_000)
        after = validation.decode_page_token("page_token", request.page_token) or 0
        if not isinstance(after, int):
            raise InvalidInput("page_token", "is not a token of ListRuns")
        rows = await asyncio.to_thread(self.store.list_runs, name, size + 1, after)
        page = rows[:size]
        token = validation.encode_page_token(page[-1][0]) if len(rows) > size else ""
        return pb.ListRunsResponse(
            runs=[mapping.run_message(run) for _, run in page], next_page_token=token
        )

    # -- laws ---------------------------------------------------------------------------------

    @translate_errors
    async def PutLaw(self, request: pb.PutLawRequest, context: Context) -> pb.PutLawResponse:
        name = validation.family_name("family", request.family)
        values = validation.law_parameters("parameters", dict(request.parameters))
        law = parse_law(request.form, values)
        source = request.source
        method = validation.text("source.method", source.method, validation.MAX_METHOD)
        method = method or "published"
        validation.text("source.citation", source.citation, validation.MAX_SOURCE_TEXT)
        validation.text("source.note", source.note, validation.MAX_SOURCE_TEXT)
        record = await asyncio.to_thread(
            self.store.put_law,
            name,
            law.form,
            law.to_mapping(),
            method,
            source.citation,
            source.note,
            _optional(request, "expected_revision"),
        )
        self.laws.invalidate(name)
        return pb.PutLawResponse(law=mapping.law_message(record))

    @translate_stream_errors
    async def FitLaw(
        self, request: pb.FitLawRequest, context: Context
    ) -> AsyncIterator[pb.FitLawEvent]:
        name = validation.family_name("family", request.family)
        resamples = request.bootstrap if request.HasField("bootstrap") else 200
        if not 0 <= resamples <= fitting.MAX_RESAMPLES:
            raise InvalidInput(
                "bootstrap", f"must be 0 to {fitting.MAX_RESAMPLES}, got {resamples}"
            )
        if request.seed < 0:
            raise InvalidInput("seed", f"must be >= 0, got {request.seed}")
        form = request.form or "chinchilla"
        records = await asyncio.to_thread(self.store.all_runs, name)
        base_law = None
        if form == "data_constrained" and request.base in ("", "law"):
            base_law = await asyncio.to_thread(self._current_chinchilla, name)
        job = FitJob(
            runs=_runs_of(records, with_unique=form == "data_constrained"),
            form=form,
            method=request.method or "vpnls",
            base=request.base,
            chinchilla=base_law[1] if base_law else None,
        ).validated()
        yield _progress("fit", 0, 1)
        fit = await self.pool.run(job.fit)
        yield _progress("fit", 1, 1)
        parts = []
        async for done, part in self._bootstrap(job, resamples, request.seed, fit.law):
            parts.append(part)
            yield _progress("bootstrap", done, resamples)
        names = job.parameter_names
        ensemble = fitting.Ensemble.of(
            np.concatenate(parts) if parts else np.empty((0, len(names)))
        )
        diagnostics = asdict(fit.diagnostics)
        diagnostics["on_bound"] = list(fit.diagnostics.on_bound)
        diagnostics.update(objective=fit.objective, failed_resamples=ensemble.failed)
        options = {"bootstrap": str(resamples), "seed": str(request.seed), **fit.options}
        if job.base == "law" and base_law is not None:
            options["base_law"] = f"chinchilla v{base_law[0]}"
        record = FitRecord(
            options=options,
            run_ids=[r.run_id for r in records],
            diagnostics=diagnostics,
            intervals={k: [lo, hi] for k, (lo, hi) in ensemble.intervals(names).items()},
            ensemble=ensemble.vectors.tolist(),
        )
        stored = await asyncio.to_thread(
            self.store.put_law,
            name,
            form,
            fit.law.to_mapping(),
            fit.method,
            "",
            f"fitted to {len(records)} runs",
            _optional(request, "expected_revision"),
            record,
        )
        self.laws.invalidate(name)
        yield pb.FitLawEvent(law=mapping.law_message(stored))

    @translate_errors
    async def BacktestLaw(
        self, request: pb.BacktestLawRequest, context: Context
    ) -> pb.BacktestLawResponse:
        name = validation.family_name("family", request.family)
        methods = (
            tuple(_fit_method(f"methods[{i}]", m) for i, m in enumerate(request.methods))
            or fitting.METHODS
        )
        cut = positive("train_below", request.train_below)
        family = await asyncio.to_thread(self.store.get_family, name)
        records = await asyncio.to_thread(self.store.all_runs, name)
        if not records:
            raise Infeasible(f"family {name!r} has no runs to backtest", field="family")
        runs = _runs_of(records)
        k = family.flops_per_param_token
        compute = np.array(
            [r.flops if r.flops is not None else k * r.params * r.tokens for r in records]
        )
        result = await self.pool.run(backtest, runs, compute, cut, methods)
        order = result.test[np.argsort(compute[result.test])]
        position = {int(index): i for i, index in enumerate(result.test)}
        response = pb.BacktestLawResponse(
            train_runs=int(result.train.size), test_runs=int(result.test.size)
        )
        for scored in result.methods:
            entry = response.methods.add(method=scored.method, failure=scored.failure)
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

    @translate_errors
    async def FitIsoFLOP(
        self, request: pb.FitIsoFLOPRequest, context: Context
    ) -> pb.FitIsoFLOPResponse:
        name = validation.family_name("family", request.family)
        family = await asyncio.to_thread(self.store.get_family, name)
        records = await asyncio.to_thread(self.store.all_runs, name)
        runs = _runs_of(records)
        k = family.flops_per_param_token
        if records and all(r.flops is not None for r in records):
            budgets = np.array([r.flops for r in records], dtype=np.float64)
        else:
            budgets = nominal_budgets(k * runs.params * runs.tokens)
        fit = await self.pool.run(fit_isoflop, runs.params, runs.tokens, runs.loss, budgets, k)
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
        points = [positive(f"predict_at[{i}]", x) for i, x in enumerate(request.predict_at)]
        if request.seed < 0:
            raise InvalidInput("seed", f"must be >= 0, got {request.seed}")
        family = await asyncio.to_thread(self.store.get_family, name)
        records = await asyncio.to_thread(self.store.all_runs, name)
        runs = _runs_of(records)
        if against == "compute":
            k = family.flops_per_param_token
            x = np.array(
                [r.flops if r.flops is not None else k * r.params * r.tokens for r in records]
            )
        else:
            x = runs.params if against == "params" else runs.tokens
        response = pb.FitBrokenPowerLawResponse(runs=len(records))
        if breaks is None:
            choice = await self.pool.run(fit_bnsl_auto, x, runs.loss, MAX_BREAKS, request.seed)
            law = choice.law
            for count, error in choice.held_out_error.items():
                response.held_out_error[count] = error
        else:
            law = await self.pool.run(fit_bnsl, x, runs.loss, breaks, request.seed)
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
        """Resample runs with replacement and refit, in chunks spread over the pool; yields
        (resamples done, that chunk's parameter vectors) as chunks finish."""
        if resamples == 0:
            return
        indices = fitting.resample_indices(len(job.runs), resamples, seed)
        count = min(resamples, max(4 * self.pool.processes, resamples // 10))
        pending = [
            asyncio.ensure_future(self.pool.run(job.bootstrap, chunk, start))
            for chunk in np.array_split(indices, count)
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

    @translate_errors
    async def GetLaw(self, request: pb.GetLawRequest, context: Context) -> pb.GetLawResponse:
        selector = pb.LawSelector(family=request.family, form=request.form, version=request.version)
        record = await asyncio.to_thread(self._law_record, selector, "")
        return pb.GetLawResponse(law=mapping.law_message(record))

    @translate_errors
    async def ListLawVersions(
        self, request: pb.ListLawVersionsRequest, context: Context
    ) -> pb.ListLawVersionsResponse:
        name = validation.family_name("family", request.family)
        if request.form and request.form not in FORMS:
            raise InvalidInput("form", f"unknown law form {request.form!r}; known: {sorted(FORMS)}")
        records = await asyncio.to_thread(self.store.list_law_versions, name, request.form or None)
        return pb.ListLawVersionsResponse(laws=[mapping.law_message(r) for r in records])

    # -- queries ------------------------------------------------------------------------------

    @translate_errors
    async def Predict(self, request: pb.PredictRequest, context: Context) -> pb.PredictResponse:
        params = positive("params", request.params)
        tokens = positive("tokens", request.tokens)
        unique = optional_positive("unique_tokens", _optional(request, "unique_tokens"))
        resolved = await self._resolve(request.law)
        loss = predict_loss(resolved.law, params, tokens, unique)
        if not math.isfinite(loss):
            raise Infeasible(
                f"the predicted loss is outside floating-point range for N = {params:g}, "
                f"D = {tokens:g}"
            )
        response = pb.PredictResponse(loss=loss, law=_summary(resolved.record))
        if resolved.ensemble is not None:
            interval = loss_interval(
                resolved.ensemble,
                params,
                tokens,
                unique if isinstance(resolved.law, DataConstrainedLaw) else None,
            )
            if interval is not None:
                response.interval.CopyFrom(pb.Interval(low=interval[0], high=interval[1]))
        return response

    @translate_errors
    async def PlanComputeOptimal(
        self, request: pb.PlanComputeOptimalRequest, context: Context
    ) -> pb.PlanComputeOptimalResponse:
        goal = request.WhichOneof("goal")
        if goal is None:
            raise InvalidInput("goal", "set either budget or target_loss")
        compute = mapping.budget_flops("budget", request.budget) if goal == "budget" else None
        target = positive("target_loss", request.target_loss) if goal == "target_loss" else None
        caps = Caps(
            max_params=_optional(request, "max_params"),
            max_tokens=_optional(request, "max_tokens"),
            unique_tokens=_optional(request, "unique_tokens"),
            max_epochs=_optional(request, "max_epochs"),
        ).validated()
        resolved = await self._resolve(request.law)
        if isinstance(resolved.law, DataConstrainedLaw) and caps.unique_tokens is not None:
            return await self._plan_repeated(resolved, compute, target, caps)
        query = ComputeOptimalQuery(
            law=resolved.law.as_chinchilla(),
            compute=compute,
            target_loss=target,
            caps=caps,
            flops_per_param_token=resolved.flops_per_param_token,
        )
        plan = compute_optimal.try_closed_form(query)
        if plan is None:
            plan = await self.solver.solve(query)
        response = mapping.plan_message(plan, resolved.record)
        if resolved.ensemble is not None:
            for name, (low, high) in plan_intervals(resolved.ensemble, query).items():
                response.intervals[name].CopyFrom(pb.Interval(low=low, high=high))
        return response

    @translate_errors
    async def PlanInference(
        self, request: pb.PlanInferenceRequest, context: Context
    ) -> pb.PlanInferenceResponse:
        goal = request.WhichOneof("goal")
        if goal is None:
            raise InvalidInput("goal", "set either target_loss or lifetime_budget")
        costs = Costs(
            training_weight=_optional(request, "training_weight") or 1.0,
            inference_weight=_optional(request, "inference_weight") or 1.0,
            training_mfu=_optional(request, "training_mfu") or 1.0,
            inference_mfu=_optional(request, "inference_mfu") or 1.0,
        )
        for name in ("training_weight", "inference_weight", "training_mfu", "inference_mfu"):
            if request.HasField(name):
                positive(name, getattr(request, name))  # 0 and NaN are errors, not defaults
        resolved = await self._resolve(request.law)
        query = InferenceQuery(
            law=resolved.law.as_chinchilla(),
            inference_tokens=request.inference_tokens,
            target_loss=request.target_loss if goal == "target_loss" else None,
            compute=request.lifetime_budget if goal == "lifetime_budget" else None,
            max_params=_optional(request, "max_params"),
            max_tokens=_optional(request, "max_tokens"),
            costs=costs,
            flops_per_param_token=resolved.flops_per_param_token,
        ).validated()
        result = await self.pool.run(plan_inference, query)
        return pb.PlanInferenceResponse(
            plan=mapping.lifetime_message(result.plan),
            chinchilla=mapping.lifetime_message(result.chinchilla),
            saving_flops=result.saving_flops,
            saving_cost=result.saving_cost,
            overtraining_ratio=result.overtraining_ratio,
            binding=list(result.binding),
            solver=result.solver,
            law=_summary(resolved.record),
        )

    async def _plan_repeated(
        self, resolved: ResolvedLaw, compute: float | None, target: float | None, caps: Caps
    ) -> pb.PlanComputeOptimalResponse:
        """Repeated data on a data_constrained law: a bounded scalar solve in a worker."""
        assert isinstance(resolved.law, DataConstrainedLaw) and caps.unique_tokens is not None
        query = RepeatedDataQuery(
            law=resolved.law,
            unique_tokens=caps.unique_tokens,
            compute=compute,
            target_loss=target,
            caps=caps,
            flops_per_param_token=resolved.flops_per_param_token,
        )
        plan = await self.pool.run(solve_repeated, query)
        response = mapping.plan_message(plan, resolved.record)
        if resolved.ensemble is not None and resolved.ensemble.shape[1] >= 7:
            intervals = await self.pool.run(repeated_plan_intervals, resolved.ensemble, query)
            for name, (low, high) in intervals.items():
                response.intervals[name].CopyFrom(pb.Interval(low=low, high=high))
        return response

    # -- helpers ------------------------------------------------------------------------------

    def _law_record(self, selector: pb.LawSelector, prefix: str) -> LawRecord:
        name = validation.family_name(f"{prefix}family", selector.family)
        if selector.form and selector.form not in FORMS:
            raise InvalidInput(
                f"{prefix}form", f"unknown law form {selector.form!r}; known: {sorted(FORMS)}"
            )
        if selector.version < 0:
            raise InvalidInput(f"{prefix}version", f"must be >= 0, got {selector.version}")
        forms = (selector.form,) if selector.form else DEFAULT_FORM_ORDER
        try:
            return self.store.get_law(name, forms, selector.version)
        except StoreError as error:
            # The store names selector fields; the request nests them under `prefix`.
            if error.field is not None:
                error.field = prefix + error.field
            raise

    async def _resolve(self, selector: pb.LawSelector) -> ResolvedLaw:
        """The selected law, from the cache when fresh, else from the store (in a thread)."""
        key = (selector.family, selector.form, selector.version)
        cached = self.laws.get(key)
        if cached is not None:
            return cached
        generation = self.laws.generation(selector.family)
        resolved = await asyncio.to_thread(self._load_law, selector)
        self.laws.put(key, resolved, generation)
        return resolved

    def _load_law(self, selector: pb.LawSelector) -> ResolvedLaw:
        record = self._law_record(selector, "law.")
        family = self.store.get_family(record.family)
        law = parse_law(record.form, record.parameters, "law.parameters")
        ensemble = None
        if record.fit is not None and record.fit.ensemble:
            ensemble = np.asarray(record.fit.ensemble, dtype=np.float64)
        return ResolvedLaw(record, law, family.flops_per_param_token, ensemble)


def _runs_of(records: list[RunRecord], with_unique: bool = False) -> Runs:
    """The runs as arrays; `with_unique` requires every run's unique_tokens."""
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
    return Runs.of(
        [r.params for r in records],
        [r.tokens for r in records],
        [r.loss for r in records],
        unique,
    )


def _fit_method(field: str, method: str) -> str:
    if method not in fitting.METHODS:
        raise InvalidInput(field, f"unknown fit method {method!r}; known: {fitting.METHODS}")
    return method


def _progress(stage: str, done: int, total: int) -> pb.FitLawEvent:
    return pb.FitLawEvent(progress=pb.FitProgress(stage=stage, done=done, total=total))


def _summary(record: LawRecord) -> pb.LawSummary:
    return pb.LawSummary(form=record.form, version=record.version, method=record.method)
