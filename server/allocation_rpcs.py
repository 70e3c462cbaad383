"""AllocateBudget: one compute budget split across jobs, each planned with its family's law."""

from __future__ import annotations

import asyncio

from planner.errors import InvalidInput, PlannerError
from planner.planning.allocation import MAX_JOBS, AllocationQuery, Job, allocate
from planner.uncertainty import allocation_intervals
from planner_api.v1 import planner_pb2 as pb
from server import mapping, validation
from server.errors import translate_errors
from server.law_cache import ResolvedLaw
from server.rpc_base import Context, RpcBase, optional_field
from server.store import StoreError


class AllocationRpcs(RpcBase):
    """AllocateBudget."""

    @translate_errors
    async def AllocateBudget(
        self, request: pb.AllocateBudgetRequest, context: Context
    ) -> pb.AllocateBudgetResponse:
        # Before any law lookup: each job costs one (AllocationQuery checks the rest).
        if len(request.jobs) > MAX_JOBS:
            raise InvalidInput("jobs", f"at most {MAX_JOBS} jobs, got {len(request.jobs)}")
        for i, job in enumerate(request.jobs):
            validation.text(f"jobs[{i}].name", job.name, validation.MAX_ITEM_NAME)
        compute = mapping.budget_flops("budget", request.budget)
        resolved = await asyncio.gather(
            *(self._resolve_job(i, job.law) for i, job in enumerate(request.jobs))
        )
        query = AllocationQuery(
            jobs=tuple(
                Job(
                    name=job.name,
                    law=law.law.as_chinchilla(),
                    weight=job.weight if job.HasField("weight") else 1.0,
                    min_flops=optional_field(job, "min_flops"),
                    max_flops=optional_field(job, "max_flops"),
                    max_params=optional_field(job, "max_params"),
                    max_tokens=optional_field(job, "max_tokens"),
                    flops_per_param_token=law.flops_per_param_token,
                )
                for job, law in zip(request.jobs, resolved, strict=True)
            ),
            compute=compute,
        ).validated()
        result = await self.pool.run(allocate, query)
        response = pb.AllocateBudgetResponse(
            jobs=[
                pb.JobAllocation(
                    name=share.name,
                    flops=share.flops,
                    params=share.params,
                    tokens=share.tokens,
                    loss=share.loss,
                    binding=list(share.binding),
                    marginal_value=share.marginal_value,
                    law=mapping.law_summary(law.record),
                )
                for share, law in zip(result.jobs, resolved, strict=True)
            ],
            marginal_value=result.marginal_value,
            objective=result.objective,
            budget_binding=result.budget_binding,
            solver=result.solver,
        )
        ensembles = [law.chinchilla_ensemble for law in resolved]
        if any(e is not None for e in ensembles):
            bands = await self.pool.run(allocation_intervals, ensembles, query)
            for message, job_bands in zip(response.jobs, bands, strict=True):
                mapping.add_bands(message.intervals, job_bands)
        return response

    async def _resolve_job(self, index: int, selector: pb.LawSelector) -> ResolvedLaw:
        try:
            return await self._resolve(selector)
        except (StoreError, PlannerError) as error:
            # The lookup names fields of one selector; here it sits inside jobs[index].
            if error.field is not None:
                error.field = f"jobs[{index}].{error.field}"
            raise
