"""Query RPCs: predictions and plans from a family's law.

Closed forms run inline (microseconds); solves go to the warm process pool.
"""

from __future__ import annotations

import functools
import math

from planner.errors import Infeasible, InvalidInput
from planner.laws import (
    DataConstrainedLaw,
    OvertrainingLaw,
    SparseAvgParamsLaw,
    predict_loss,
)
from planner.planning import compute_optimal
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery
from planner.planning.data_mix import (
    ObservedPool,
    Pool,
    plan_with_observed_pools,
)
from planner.planning.inference import Costs, InferenceQuery, plan_inference
from planner.planning.overtraining import OvertrainingQuery, plan_overtraining
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.planning.sparsity import PruningSchedule, SparsityQuery, plan_sparsity
from planner.uncertainty import (
    inference_intervals,
    law_loss_interval,
    plan_intervals,
    repeated_plan_intervals,
    sparsity_intervals,
)
from planner.validation import optional_positive, positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.errors import translate_errors
from server.law_cache import ResolvedLaw
from server.rpc_base import Context, optional_field, with_form
from server.store import NotFound
from server.store.records import LawRecord
from server.task_rpcs import TaskRpcs
from server.training_setup import TrainingLaws, money_costs


class PlanningRpcs(TaskRpcs):
    """Predict, PlanComputeOptimal, PlanInference, PlanOvertraining, PlanDataMix, PlanSparsity
    (a target accuracy is planned through TaskRpcs' task laws)."""

    @functools.cached_property
    def _training_laws(self) -> TrainingLaws:
        """Step Laws and critical-batch constants for plans on hardware (server.training_setup)."""
        return TrainingLaws(self.laws, self._law_record)

    # -- queries ------------------------------------------------------------------------------

    @translate_errors
    async def Predict(self, request: pb.PredictRequest, context: Context) -> pb.PredictResponse:
        params = positive("params", request.params)
        tokens = positive("tokens", request.tokens)
        unique = optional_positive("unique_tokens", optional_field(request, "unique_tokens"))
        resolved = await self._resolve(request.law)
        loss = predict_loss(resolved.law, params, tokens, unique)
        if not math.isfinite(loss):
            raise Infeasible(
                f"the predicted loss is outside floating-point range for N = {params:g}, "
                f"D = {tokens:g}"
            )
        response = pb.PredictResponse(loss=loss, law=mapping.law_summary(resolved.record))
        kind = request.interval_kind or pb.INTERVAL_KIND_BAND
        if kind not in (pb.INTERVAL_KIND_BAND, pb.INTERVAL_KIND_PREDICTION):
            raise InvalidInput("interval_kind", f"unknown interval kind {kind}")
        if resolved.ensemble is not None:
            noise = None
            if kind == pb.INTERVAL_KIND_PREDICTION:
                noise = _residual_sd(resolved.record)
            interval = law_loss_interval(
                resolved.law, resolved.ensemble, params, tokens, unique, noise
            )
            if interval is not None:
                response.interval.CopyFrom(pb.Interval(low=interval.low, high=interval.high))
                response.interval_kind = kind
        return response

    @translate_errors
    async def PlanComputeOptimal(
        self, request: pb.PlanComputeOptimalRequest, context: Context
    ) -> pb.PlanComputeOptimalResponse:
        goal = request.WhichOneof("goal")
        if goal is None:
            raise InvalidInput("goal", "set either budget or target_loss (or target_accuracy)")
        compute = mapping.budget_flops("budget", request.budget) if goal == "budget" else None
        target = positive("target_loss", request.target_loss) if goal == "target_loss" else None
        caps = mapping.caps(request)
        # Plans without hardware must not pay for it: two field checks, no call.
        training = None
        if request.HasField("hardware") or request.HasField("hyperparameter_law"):
            training = await self._training_laws.prepare(request)
        if goal == "target_accuracy":
            return await self._plan_task_compute_optimal(request, caps, training)
        resolved = await self._resolve(request.law)
        if isinstance(resolved.law, DataConstrainedLaw) and caps.unique_tokens is not None:
            response = await self._plan_repeated(resolved, compute, target, caps)
        else:
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
            if resolved.chinchilla_ensemble is not None:
                mapping.add_bands(
                    response.intervals, plan_intervals(resolved.chinchilla_ensemble, query)
                )
        if training is not None:
            training.fill(
                response.training,
                response.params,
                response.tokens,
                response.loss,
                resolved.flops_per_param_token,
            )
        return response

    @translate_errors
    async def PlanInference(
        self, request: pb.PlanInferenceRequest, context: Context
    ) -> pb.PlanInferenceResponse:
        goal = request.WhichOneof("goal")
        if goal is None:
            raise InvalidInput("goal", "set either target_loss or lifetime_budget")
        training = await self._training_laws.prepare(request)
        costs = money_costs(request, training) or Costs(
            training_weight=optional_field(request, "training_weight") or 1.0,
            inference_weight=optional_field(request, "inference_weight") or 1.0,
            training_mfu=optional_field(request, "training_mfu") or 1.0,
            inference_mfu=optional_field(request, "inference_mfu") or 1.0,
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
            max_params=optional_field(request, "max_params"),
            max_tokens=optional_field(request, "max_tokens"),
            costs=costs,
            flops_per_param_token=resolved.flops_per_param_token,
        ).validated()
        result = await self.pool.run(plan_inference, query)
        response = pb.PlanInferenceResponse(
            plan=mapping.lifetime_message(result.plan),
            chinchilla=mapping.lifetime_message(result.chinchilla),
            saving_flops=result.saving_flops,
            saving_cost=result.saving_cost,
            overtraining_ratio=result.overtraining_ratio,
            binding=list(result.binding),
            solver=result.solver,
            law=mapping.law_summary(resolved.record),
        )
        if training is not None:
            plan = result.plan
            training.fill(
                response.training, plan.params, plan.tokens, plan.loss, query.flops_per_param_token
            )
        if resolved.chinchilla_ensemble is not None:
            bands = await self.pool.run(inference_intervals, resolved.chinchilla_ensemble, query)
            mapping.add_bands(response.intervals, bands)
        return response

    @translate_errors
    async def PlanOvertraining(
        self, request: pb.PlanOvertrainingRequest, context: Context
    ) -> pb.PlanOvertrainingResponse:
        goal = request.WhichOneof("goal")
        if goal is None:
            raise InvalidInput(
                "goal", "set one of budget, target_loss, target_error or target_accuracy"
            )
        training = await self._training_laws.prepare(request)
        if goal == "target_accuracy":
            return await self._plan_task_overtraining(request, training)
        resolved = await self._resolve(
            with_form(request.law, request.law.form or OvertrainingLaw.form)
        )
        if not isinstance(resolved.law, OvertrainingLaw):
            raise InvalidInput(
                "law.form", f"PlanOvertraining needs an overtraining law, not {resolved.law.form}"
            )
        query = OvertrainingQuery(
            law=resolved.law,
            compute=mapping.budget_flops("budget", request.budget) if goal == "budget" else None,
            target_loss=request.target_loss if goal == "target_loss" else None,
            target_error=request.target_error if goal == "target_error" else None,
            multiplier=optional_field(request, "multiplier"),
        )
        # Closed forms: microseconds, answered inline.
        plan = plan_overtraining(query)
        response = mapping.overtraining_message(plan, resolved.record)
        if training is not None:
            # Time counts the family's FLOPs per param-token (the law's compute is 6 N D).
            training.fill(
                response.training,
                plan.params,
                plan.tokens,
                plan.loss,
                resolved.flops_per_param_token,
            )
        return response

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
            bands = await self.pool.run(repeated_plan_intervals, resolved.ensemble, query)
            mapping.add_bands(response.intervals, bands)
        return response

    @translate_errors
    async def PlanDataMix(
        self, request: pb.PlanDataMixRequest, context: Context
    ) -> pb.PlanDataMixResponse:
        pools: list[Pool | ObservedPool] = []
        for i, p in enumerate(request.pools):
            validation.text(f"pools[{i}].name", p.name, validation.MAX_ITEM_NAME)
            if not p.observations:
                pools.append(Pool(p.name, p.size, p.utility, p.half_life))
                continue
            if p.utility != 0 or p.half_life != 0:
                raise InvalidInput(
                    f"pools[{i}].observations",
                    "give either utility and half_life or observations to fit them, not both",
                )
            observed = list(p.observations)
            pools.append(
                ObservedPool(
                    p.name,
                    p.size,
                    tuple(o.samples for o in observed),
                    tuple(o.error for o in observed),
                )
            )
        mix = await self.pool.run(
            plan_with_observed_pools,
            pools,
            request.samples,
            request.a if request.HasField("a") else 1.0,
            request.d if request.HasField("d") else 0.1,
            tuple(request.compare_at),
        )
        response = mapping.data_mix_message(mix.plan)
        for name, fit in mix.fits:
            response.fitted.add(
                name=name, utility=fit.utility, half_life=fit.half_life, squared_error=fit.sse
            )
        return response

    @translate_errors
    async def PlanSparsity(
        self, request: pb.PlanSparsityRequest, context: Context
    ) -> pb.PlanSparsityResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidInput("target", "set either final_sparsity or final_params")
        default = PruningSchedule()
        schedule = PruningSchedule(
            start=request.prune_start if request.HasField("prune_start") else default.start,
            end=request.prune_end if request.HasField("prune_end") else default.end,
        )
        compute = mapping.budget_flops("budget", request.budget)
        training = await self._training_laws.prepare(request)
        resolved = await self._resolve_sparse(request.law)
        query = SparsityQuery(
            law=resolved.law.as_chinchilla(),
            compute=compute,
            final_sparsity=request.final_sparsity if target == "final_sparsity" else None,
            final_params=request.final_params if target == "final_params" else None,
            schedule=schedule,
            prunable_fraction=(
                request.prunable_fraction if request.HasField("prunable_fraction") else 1.0
            ),
            sparse_flops=not request.dense_flops,
            flops_per_param_token=resolved.flops_per_param_token,
        ).validated()
        plan = await self.pool.run(plan_sparsity, query)
        response = mapping.sparsity_message(plan, resolved.record)
        if training is not None:
            # The run starts dense (the Step Law's N) and does the plan's FLOPs.
            training.fill(
                response.training,
                plan.dense_params,
                plan.tokens,
                plan.loss,
                query.flops_per_param_token,
                flops=plan.flops,
            )
        if resolved.chinchilla_ensemble is not None:
            bands = await self.pool.run(sparsity_intervals, resolved.chinchilla_ensemble, query)
            mapping.add_bands(response.intervals, bands)
        return response

    async def _resolve_sparse(self, selector: pb.LawSelector) -> ResolvedLaw:
        """The selected law; with no form, the family's sparse_avg_params law if it has one,
        else its default form (Jin: a dense law holds with N read as N_avg)."""
        if selector.form:
            return await self._resolve(selector)
        try:
            return await self._resolve(with_form(selector, SparseAvgParamsLaw.form))
        except NotFound as error:
            if error.field != "law.form":
                raise
        return await self._resolve(selector)


def _residual_sd(record: LawRecord) -> float:
    """The fit's residual noise on log loss, which a new run adds to the law's band."""
    value = record.fit.diagnostics.get("residual_sd_log_loss") if record.fit else None
    if not value:  # versions stored before residual SDs were recorded
        raise Infeasible(
            f"{record.family} {record.form} v{record.version} has no residual standard deviation "
            "stored; refit it for prediction intervals, or ask for the band",
            field="interval_kind",
        )
    return float(value)
