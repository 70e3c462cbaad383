"""Store records and domain results to protobuf messages, and budgets from protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from planner.budget import flops_from_accelerator_hours
from planner.errors import InvalidInput
from planner.planning.compute_optimal import Caps, ComputeOptimalPlan
from planner.planning.data_mix import DataMixPlan
from planner.planning.inference import LifetimePlan
from planner.planning.overtraining import OvertrainingPlan
from planner.planning.sparsity import SparsityPlan
from planner.validation import positive
from planner_api.v1 import planner_pb2 as pb
from server.store.records import FamilyRecord, LawRecord, LawRef, RunRecord

CONVENTION_ENUM = {
    "total": pb.PARAM_CONVENTION_TOTAL,
    "non_embedding": pb.PARAM_CONVENTION_NON_EMBEDDING,
}


DIAGNOSTIC_FIELDS = frozenset(pb.FitDiagnostics.DESCRIPTOR.fields_by_name)


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
        metric=record.metric,
    )


def run_message(record: RunRecord) -> pb.Run:
    message = pb.Run(
        run_id=record.run_id,
        params=record.params,
        tokens=record.tokens,
        loss=record.loss,
        tags=record.tags,
        metrics=record.metrics,
    )
    if record.unique_tokens is not None:
        message.unique_tokens = record.unique_tokens
    if record.flops is not None:
        message.flops = record.flops
    if record.step is not None:
        message.step = record.step
    if record.weight is not None:
        message.weight = record.weight
    if record.lr is not None:
        message.lr = record.lr
    if record.batch_tokens is not None:
        message.batch_tokens = record.batch_tokens
    return message


def law_message(record: LawRecord) -> pb.Law:
    message = pb.Law(
        family=record.family,
        form=record.form,
        version=record.version,
        parameters=record.parameters,
        source=pb.LawSource(method=record.method, citation=record.citation, note=record.note),
        create_time=timestamp(record.created_at),
        current=record.current,
    )
    fit = record.fit
    if fit is not None:
        # Versions stored by older releases lack newer keys; unknown keys are not the API's.
        known = {k: v for k, v in fit.diagnostics.items() if k in DIAGNOSTIC_FIELDS}
        message.diagnostics.CopyFrom(pb.FitDiagnostics(**known))
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


def caps(
    request: pb.PlanComputeOptimalRequest | pb.PlanComputeOptimalBatchRequest,
) -> Caps:
    """The validated caps of a compute-optimal request (single or batch: the same fields)."""

    def given(name: str) -> float | None:
        return getattr(request, name) if request.HasField(name) else None  # type: ignore[arg-type]

    return Caps(
        max_params=given("max_params"),
        max_tokens=given("max_tokens"),
        unique_tokens=given("unique_tokens"),
        max_epochs=given("max_epochs"),
    ).validated()


def plan_message(plan: ComputeOptimalPlan, law: LawRecord) -> pb.PlanComputeOptimalResponse:
    return pb.PlanComputeOptimalResponse(
        params=plan.params,
        tokens=plan.tokens,
        loss=plan.loss,
        flops=plan.flops,
        tokens_per_param=plan.tokens_per_param,
        binding=list(plan.binding),
        solver=plan.solver,
        law=law_summary(law),
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


def add_bands(target: Any, bands: Mapping[str, tuple[float, float, float]]) -> None:
    """Copy p5/p50/p95 bands into a response's `intervals` map."""
    for name, (low, median, high) in bands.items():
        target[name].CopyFrom(pb.Interval(low=low, high=high, median=median))


def overtraining_message(plan: OvertrainingPlan, law: LawRecord) -> pb.PlanOvertrainingResponse:
    return pb.PlanOvertrainingResponse(
        multiplier=plan.multiplier,
        params=plan.params,
        tokens=plan.tokens,
        flops=plan.flops,
        loss=plan.loss,
        downstream_error=plan.downstream_error,
        best_multiplier=plan.best_multiplier,
        loss_penalty=plan.loss_penalty,
        compute_ratio=plan.compute_ratio,
        law=law_summary(law),
    )


def data_mix_message(plan: DataMixPlan) -> pb.PlanDataMixResponse:
    return pb.PlanDataMixResponse(
        pools=[pb.PoolShare(name=p.name, samples=p.samples, epochs=p.epochs) for p in plan.pools],
        predicted_error=plan.predicted_error,
        candidates=[
            pb.DataMixCandidate(
                pools=list(c.pools),
                predicted_error=c.predicted_error,
                compare_errors=list(c.compare_errors),
            )
            for c in plan.candidates
        ],
        solver=plan.solver,
    )


def sparsity_message(plan: SparsityPlan, law: LawRecord) -> pb.PlanSparsityResponse:
    dense = plan.dense_same_size
    return pb.PlanSparsityResponse(
        dense_params=plan.dense_params,
        average_params=plan.average_params,
        final_params=plan.final_params,
        final_sparsity=plan.final_sparsity,
        tokens=plan.tokens,
        loss=plan.loss,
        flops=plan.flops,
        schedule=[pb.SparsityStep(fraction=f, sparsity=s) for f, s in plan.schedule],
        dense_same_size=pb.DenseModel(params=dense.params, tokens=dense.tokens, loss=dense.loss),
        binding=list(plan.binding),
        solver=plan.solver,
        law=law_summary(law),
        notes=list(plan.notes),
    )
