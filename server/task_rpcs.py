"""Downstream-task queries through a family's task laws (form "task_link:<task>"): PredictTask,
and the target-accuracy goals of PlanComputeOptimal and PlanOvertraining.

A target accuracy becomes a target task loss through the link's inverse; the step-1 law (a
ChinchillaLaw in task-loss units) is then planned for that loss, so a plan's `loss` is the task
loss (the unit of the metric the law was fitted to), not nats per token. The critical-batch
check of a training setup needs a language-modelling loss, which a task law does not give: the
setup of a target-accuracy plan is filled without it.

The noisy flag compares the law's stored checkpoint spread with the family's current task laws'
(planner.tasks.noisy_tasks: above the mean coefficient of variation in loss or accuracy); with
fewer than two task laws there is nothing to compare and it is false.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.errors import Infeasible, InvalidInput
from planner.forms import require_kind
from planner.hyperparams.hardware import plan_training
from planner.planning import compute_optimal
from planner.planning.compute_optimal import Caps, ComputeOptimalQuery
from planner.tasks import CheckpointSpread, noisy_tasks
from planner.tasks.ratio_plan import plan_at_ratio
from planner.tasks.stored import (
    TASK_FORM_PREFIX,
    TaskLinkLaw,
    ensemble_accuracy,
    ensemble_task_losses,
    is_task_form,
    task_form,
    task_name,
)
from planner.uncertainty import plan_intervals
from planner.validation import finite, positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping
from server.errors import translate_errors
from server.law_cache import FreshEntries
from server.rpc_base import Context, RpcBase, optional_field, with_form
from server.store import NotFound
from server.store.records import LawRecord, LawRef
from server.training_setup import PreparedTraining, fill_training

SPREAD_FIELDS = ("checkpoints", "loss_sd", "loss_cv", "accuracy_sd", "accuracy_cv")


@dataclass(frozen=True)
class ResolvedTask:
    """A task law version with what its queries need."""

    record: LawRecord
    law: TaskLinkLaw
    ensemble: NDArray[np.float64] | None  # rows of TASK_LAW_NAMES, or None without a bootstrap
    flops_per_param_token: float
    noisy: bool


def stored_spread(record: LawRecord) -> CheckpointSpread | None:
    """The spread a fit stored in its options (None for versions without one, e.g. PutLaw)."""
    options = record.fit.options if record.fit is not None else {}
    try:
        values = [float(options[f"spread_{name}"]) for name in SPREAD_FIELDS]
    except (KeyError, ValueError):
        return None
    return CheckpointSpread(int(values[0]), *values[1:])


def band(rows: NDArray[np.float64], params: float, tokens: float) -> tuple[float, float] | None:
    """95% band of the chained accuracy over the paired ensemble rows."""
    _, accuracy = ensemble_accuracy(rows, params, tokens)
    accuracy = accuracy[np.isfinite(accuracy)]
    if accuracy.size == 0:
        return None
    low, high = np.percentile(accuracy, [2.5, 97.5])
    return float(low), float(high)


class TaskRpcs(RpcBase):
    """PredictTask, and the task laws behind target-accuracy plans."""

    @functools.cached_property
    def _task_laws(self) -> FreshEntries[ResolvedTask]:
        return FreshEntries(self.laws)

    @translate_errors
    async def PredictTask(
        self, request: pb.PredictTaskRequest, context: Context
    ) -> pb.PredictTaskResponse:
        params = positive("params", request.params)
        tokens = positive("tokens", request.tokens)
        resolved = await self._resolve_task(request.law, request.task, "task")
        prediction = resolved.law.predict(params, tokens)
        link = resolved.law.link
        response = pb.PredictTaskResponse(
            accuracy=prediction.accuracy,
            task_loss=prediction.task_loss,
            law=mapping.law_summary(resolved.record),
            floor=link.floor,
            ceiling=link.ceiling,
            noisy=resolved.noisy,
        )
        if resolved.ensemble is not None:
            interval = band(resolved.ensemble, params, tokens)
            if interval is not None:
                response.interval.CopyFrom(pb.Interval(low=interval[0], high=interval[1]))
        return response

    async def _resolve_task(
        self, selector: pb.LawSelector, task: str, task_field: str
    ) -> ResolvedTask:
        """The task law the selector and task name (off the event loop: several store reads)."""
        if selector.form and not is_task_form(selector.form):
            raise InvalidInput(
                "law.form", f"must be empty or {TASK_FORM_PREFIX}<task> for a task query, got "
                f"{selector.form[:80]!r}",
            )  # fmt: skip
        if not task and selector.form:
            task = selector.form[len(TASK_FORM_PREFIX) :]
        if not task:
            raise InvalidInput(task_field, "is required: name the task")
        name = task_name(task_field, task)
        if selector.form and selector.form != task_form(name):
            raise InvalidInput(task_field, f"{name!r} does not match law.form {selector.form!r}")
        selector = with_form(selector, task_form(name))
        key = (selector.family, selector.form, selector.version)
        # Cached like final-loss laws: a write to the family (another task fitted, which can
        # change the noisy flag) clears it.
        return await self._task_laws.fetch(key, lambda: self._load_task(selector))

    def _load_task(self, selector: pb.LawSelector) -> ResolvedTask:
        task = selector.form[len(TASK_FORM_PREFIX) :]
        try:
            record = self._law_record(selector, "law.", "task")
        except NotFound as error:
            if error.field != "law.form":
                raise
            raise Infeasible(
                f"no task law for task {task!r} in family {selector.family!r} (fit one with "
                f"FitLaw form 'task_link', task.name {task!r}; `planner task fit "
                f"{selector.family} --task {task} ...`)",
                field="task",
            ) from None
        require_kind(record.form, "task", "A task query")
        law = TaskLinkLaw.of(record.form, record.parameters, "law.parameters")
        family = self.store.get_family(record.family)
        ensemble = None
        if record.fit is not None and record.fit.ensemble:
            ensemble = np.asarray(record.fit.ensemble, dtype=np.float64)
        return ResolvedTask(
            record, law, ensemble, family.flops_per_param_token, self._noisy(record, family.laws)
        )

    def _noisy(self, record: LawRecord, laws: tuple[LawRef, ...]) -> bool:
        own = stored_spread(record)
        if own is None:
            return False
        spreads = {record.form: own}
        for ref in laws:
            form = ref.form
            if form == record.form or not is_task_form(form):
                continue
            other = stored_spread(self.store.get_law(record.family, (form,), 0))
            if other is not None:
                spreads[form] = other
        return len(spreads) >= 2 and record.form in noisy_tasks(spreads)

    # -- plans with a target accuracy ----------------------------------------------------------

    async def _target_loss(
        self, selector: pb.LawSelector, target: pb.TaskTarget
    ) -> tuple[ResolvedTask, float]:
        """The task law and the task loss its link gives the target accuracy."""
        accuracy = finite("target_accuracy.accuracy", target.accuracy)
        if not 0 < accuracy < 1:
            raise InvalidInput("target_accuracy.accuracy", f"must lie in (0, 1), got {accuracy:g}")
        resolved = await self._resolve_task(selector, target.task, "target_accuracy.task")
        link = resolved.law.link
        try:
            loss = link.task_loss_for(accuracy)
        except Infeasible as error:
            raise Infeasible(
                f"target accuracy {accuracy:g} is outside the {resolved.law.task} link's range "
                f"({link.floor:.4g}, {link.ceiling:.4g}) ({resolved.record.form} "
                f"v{resolved.record.version}): {error.message}",
                field="target_accuracy.accuracy",
            ) from None
        if not loss > resolved.law.loss_law.E:
            raise Infeasible(
                f"target accuracy {accuracy:g} needs task loss {loss:.6g}, not above the step-1 "
                f"law's irreducible loss E = {resolved.law.loss_law.E:.6g}: no (N, D) reaches it",
                field="target_accuracy.accuracy",
            )
        return resolved, loss

    async def _plan_task_compute_optimal(
        self,
        request: pb.PlanComputeOptimalRequest,
        caps: Caps,
        training: PreparedTraining | None,
    ) -> pb.PlanComputeOptimalResponse:
        """Least compute reaching the target accuracy: the step-1 law planned for its task loss
        under the caps (closed form, or the GP when a cap binds)."""
        resolved, loss = await self._target_loss(request.law, request.target_accuracy)
        query = ComputeOptimalQuery(
            law=resolved.law.loss_law,
            compute=None,
            target_loss=loss,
            caps=caps,
            flops_per_param_token=resolved.flops_per_param_token,
        )
        plan = compute_optimal.try_closed_form(query)
        if plan is None:
            plan = await self.solver.solve(query)
        response = mapping.plan_message(plan, resolved.record)
        if resolved.ensemble is not None:
            # Each row its own chain: its link gives its task loss, its step 1 plans for it.
            rows = resolved.ensemble
            targets = ensemble_task_losses(rows, request.target_accuracy.accuracy)
            bands = await self.pool.run(plan_intervals, rows, query, targets)
            mapping.add_bands(response.intervals, bands)
        if training is not None:
            _fill_without_loss(training, response.training, plan.params, plan.tokens,
                               resolved.flops_per_param_token)  # fmt: skip
        return response

    async def _plan_task_overtraining(
        self, request: pb.PlanOvertrainingRequest, training: PreparedTraining | None
    ) -> pb.PlanOvertrainingResponse:
        """The least compute at `multiplier` for the target accuracy (the compute-optimal ratio
        for its task loss when not set): planner.tasks.ratio_plan."""
        resolved, loss = await self._target_loss(request.law, request.target_accuracy)
        k = resolved.flops_per_param_token
        # A bracketed scalar root and three closed forms: microseconds, answered inline.
        plan = plan_at_ratio(resolved.law.loss_law, loss, optional_field(request, "multiplier"), k)
        if not all(math.isfinite(v) for v in (plan.params, plan.tokens, plan.flops)):
            raise Infeasible("the plan is outside floating-point range", field="multiplier")
        response = pb.PlanOvertrainingResponse(
            multiplier=plan.multiplier,
            params=plan.params,
            tokens=plan.tokens,
            flops=plan.flops,
            loss=plan.loss,
            best_multiplier=plan.best_multiplier,
            loss_penalty=plan.loss_penalty,
            compute_ratio=plan.compute_ratio,
            law=mapping.law_summary(resolved.record),
        )
        if training is not None:
            _fill_without_loss(training, response.training, plan.params, plan.tokens, k)
        return response


def _fill_without_loss(
    training: PreparedTraining, target: pb.TrainingSetup, params: float, tokens: float, k: float
) -> None:
    """PreparedTraining.fill without the critical-batch check (a task loss is not the
    language-modelling loss the check reads)."""
    plan = plan_training(
        params,
        tokens,
        training.hardware.profile,
        flops_per_param_token=k,
        batch_tokens=training.hardware.batch_tokens,
        step_law=training.step_law.law,
        critical_batch_law=training.critical_batch,
    )
    fill_training(target, plan, training.step_law.summary)
