"""Store records and domain results to protobuf messages, and budgets from protobuf."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from planner.budget import flops_from_accelerator_hours
from planner.errors import InvalidInput
from planner.planning.compute_optimal import ComputeOptimalPlan
from planner.planning.inference import LifetimePlan
from planner.validation import positive
from planner_api.v1 import planner_pb2 as pb
from server.store.records import FamilyRecord, LawRecord, LawRef, RunRecord

CONVENTION_ENUM = {
    "total": pb.PARAM_CONVENTION_TOTAL,
    "non_embedding": pb.PARAM_CONVENTION_NON_EMBEDDING,
}


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def law_summary(ref: LawRef | LawRecord) -> pb.LawSummary:
    return pb.LawSummary(form=ref.form, version=ref.version, method=ref.method)


def family_message(record: FamilyRecord) -> pb.Family:
    return pb.Family(
        name=record.name,
        description=record.description,
        param_convention=CONVENTION_ENUM.get(record.param_convention, pb.PARAM_CONVENTION_TOTAL),
        flops_per_param_token=record.flops_per_param_token,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
        revision=record.revision,
        laws=[law_summary(ref) for ref in record.laws],
        run_count=record.run_count,
    )


def run_message(record: RunRecord) -> pb.Run:
    message = pb.Run(
        run_id=record.run_id,
        params=record.params,
        tokens=record.tokens,
        loss=record.loss,
        tags=record.tags,
    )
    if record.unique_tokens is not None:
        message.unique_tokens = record.unique_tokens
    if record.flops is not None:
        message.flops = record.flops
    if record.step is not None:
        message.step = record.step
    return message


def law_message(record: LawRecord) -> pb.Law:
    message = pb.Law(
        family=record.family,
        form=record.form,
        version=record.version,
        parameters=record.parameters,
        source=pb.LawSource(method=record.method, citation=record.citation, note=record.note),
        create_time=timestamp(record.created_at),
    )
    fit = record.fit
    if fit is not None:
        message.diagnostics.CopyFrom(pb.FitDiagnostics(**fit.diagnostics))
        for name, (low, high) in fit.intervals.items():
            message.intervals[name].CopyFrom(pb.Interval(low=low, high=high))
        message.ensemble_size = len(fit.ensemble)
        message.run_ids.extend(fit.run_ids)
        message.options.update(fit.options)
    return message


def budget_flops(field: str, budget: pb.ComputeBudget) -> float:
    """FLOPs of a budget given as FLOPs or as accelerator-hours x peak x MFU."""
    kind = budget.WhichOneof("budget")
    if kind == "flops":
        return positive(f"{field}.flops", budget.flops)
    if kind == "accelerator":
        acc = budget.accelerator
        return flops_from_accelerator_hours(
            acc.accelerator_hours, acc.peak_flops_per_second, acc.mfu
        )
    raise InvalidInput(field, "set either flops or accelerator")


def plan_message(plan: ComputeOptimalPlan, law: LawRecord) -> pb.PlanComputeOptimalResponse:
    return pb.PlanComputeOptimalResponse(
        params=plan.params,
        tokens=plan.tokens,
        loss=plan.loss,
        flops=plan.flops,
        tokens_per_param=plan.tokens_per_param,
        binding=list(plan.binding),
        solver=plan.solver,
        law=pb.LawSummary(form=law.form, version=law.version, method=law.method),
        epochs=plan.epochs,
    )


def lifetime_message(plan: LifetimePlan) -> pb.LifetimePlan:
    return pb.LifetimePlan(
        params=plan.params,
        tokens=plan.tokens,
        loss=plan.loss,
        training_flops=plan.training_flops,
        inference_flops=plan.inference_flops,
        total_flops=plan.total_flops,
        tokens_per_param=plan.tokens_per_param,
        cost=plan.cost,
    )
