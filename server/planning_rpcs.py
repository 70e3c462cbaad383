"""Query RPCs: predictions and plans from a family's law.

Closed forms run inline (microseconds); solves go to the warm process pool.
"""

from __future__ import annotations

import math

from planner.errors import Infeasible, InvalidInput
from planner.laws import (
    DataConstrainedLaw,
    predict_loss,
)
from planner.planning import compute_optimal
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery
from planner.planning.inference import Costs, InferenceQuery, plan_inference
from planner.planning.repeated_data import RepeatedDataQuery, solve_repeated
from planner.uncertainty import loss_interval, plan_intervals, repeated_plan_intervals
from planner.validation import optional_positive, positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping
from server.errors import translate_errors
from server.law_cache import ResolvedLaw
from server.rpc_base import Context, RpcBase, optional_field


class PlanningRpcs(RpcBase):
    """Predict, PlanComputeOptimal, PlanInference."""

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
            max_params=optional_field(request, "max_params"),
            max_tokens=optional_field(request, "max_tokens"),
            unique_tokens=optional_field(request, "unique_tokens"),
            max_epochs=optional_field(request, "max_epochs"),
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
        return pb.PlanInferenceResponse(
            plan=mapping.lifetime_message(result.plan),
            chinchilla=mapping.lifetime_message(result.chinchilla),
            saving_flops=result.saving_flops,
            saving_cost=result.saving_cost,
            overtraining_ratio=result.overtraining_ratio,
            binding=list(result.binding),
            solver=result.solver,
            law=mapping.law_summary(resolved.record),
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
