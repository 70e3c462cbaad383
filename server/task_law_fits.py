"""FitLaw for form "task_link": a downstream task's two-step law (planner.tasks) fitted to the
family's runs' metrics, stored as form "task_link:<task>".

Each run's checkpoints carrying the task's loss and accuracy metrics (rows with neither are
other runs' or other evaluations' and are left out) become one RunCheckpoints, in token order.
The request is checked and the data shaped before any operation starts, as for the other forms;
the fit and the bootstrap chunks run in the fit pool.

The noisy flag is not stored: it compares a task's checkpoint spread with the family's other
task laws (planner.tasks.noisy_tasks), and the tasks fitted later change it. Each version
stores its spread (options spread_*); PredictTask computes the flag against the family's
current task laws at query time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.errors import Infeasible, InvalidInput
from planner.fitting.chinchilla import Ensemble
from planner.fitting.task_jobs import MIN_RUNS, TASK_FIT_METHOD, TaskFitJob, run_resamples
from planner.tasks import RunCheckpoints, TaskScalingLaw, final_point
from planner.tasks.stored import TASK_LAW_NAMES, TaskLinkLaw, task_form, task_name
from planner.validation import finite
from planner_api.v1 import planner_pb2 as pb
from server import validation
from server.curve_law_fits import FitServices
from server.operations import Progress, ReportProgress, Work
from server.store.records import FitRecord, RunRecord

TASK_FIT_FORM = "task_link"
CITATION = "Bhagia et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders"
DEFAULT_CHANCE = 0.25
DEFAULT_SKIP_FRACTION = 0.1
DEFAULT_WINDOW = 5
MAX_WINDOW = 100
SPREAD_FIELDS = ("checkpoints", "loss_sd", "loss_cv", "accuracy_sd", "accuracy_cv")


@dataclass(frozen=True)
class TaskSettings:
    """A request's TaskFitOptions, checked, defaults applied."""

    name: str
    loss_metric: str
    accuracy_metric: str
    chance: float
    skip_fraction: float
    window: int

    def options(self) -> dict[str, str]:
        # repr: the stored strings read back as the same floats.
        return {
            "task": self.name,
            "loss_metric": self.loss_metric,
            "accuracy_metric": self.accuracy_metric,
            "chance": repr(self.chance),
            "skip_fraction": repr(self.skip_fraction),
            "window": str(self.window),
        }


def task_settings(message: pb.TaskFitOptions) -> TaskSettings:
    """INVALID_ARGUMENT naming `task.<field>` for anything out of range."""
    name = task_name("task.name", message.name)
    metrics = []
    for field in ("loss_metric", "accuracy_metric"):
        value = getattr(message, field)
        if not validation.METRIC_NAME.fullmatch(value):
            raise InvalidInput(
                f"task.{field}",
                f"must name a run metric (1-64 characters of A-Z, a-z, 0-9, _ . : / -), "
                f"got {value[:80]!r}",
            )
        metrics.append(value)
    if metrics[0] == metrics[1]:
        raise InvalidInput("task.accuracy_metric", "must differ from task.loss_metric")
    chance = finite("task.chance", message.chance) if message.HasField("chance") else DEFAULT_CHANCE
    if not 0 <= chance < 1:
        raise InvalidInput("task.chance", f"must lie in [0, 1), got {chance:g}")
    skip = DEFAULT_SKIP_FRACTION
    if message.HasField("skip_fraction"):
        skip = finite("task.skip_fraction", message.skip_fraction)
        if not 0 <= skip < 1:
            raise InvalidInput("task.skip_fraction", f"must lie in [0, 1), got {skip:g}")
    window = message.window if message.HasField("window") else DEFAULT_WINDOW
    if not 1 <= window <= MAX_WINDOW:
        raise InvalidInput("task.window", f"must be 1 to {MAX_WINDOW}, got {window}")
    return TaskSettings(name, metrics[0], metrics[1], chance, skip, window)


def check_task_request(request: pb.FitLawRequest, form: str) -> TaskSettings:
    """Refuse what does not apply to a task fit; its settings."""
    if form != TASK_FIT_FORM:
        if form.startswith(TASK_FIT_FORM + ":"):
            raise InvalidInput(
                "form", f"fit form {TASK_FIT_FORM!r} with task.name set; the version is stored "
                f"as {form!r}",
            )  # fmt: skip
        raise InvalidInput("task", f"applies only to form {TASK_FIT_FORM!r}, not {form!r}")
    if not request.HasField("task"):
        raise InvalidInput("task", f"is required for form {TASK_FIT_FORM!r}: name the task and "
                           "the run metrics holding its loss and accuracy")  # fmt: skip
    if request.method not in ("", "auto", TASK_FIT_METHOD):
        raise InvalidInput("method", f"a task law is fitted by {TASK_FIT_METHOD!r} (or 'auto')")
    if request.options.ListFields():
        raise InvalidInput("options", "apply to the final-loss forms; a task fit takes task.*")
    if request.HasField("breaks"):
        raise InvalidInput("breaks", "applies only to the bnsl_* forms")
    if request.base:
        raise InvalidInput("base", "applies only to the data_constrained form")
    if request.schedules:
        raise InvalidInput("schedules", "applies only to the multi_power and lr_annealing forms")
    return task_settings(request.task)


def task_runs(
    records: Sequence[RunRecord], settings: TaskSettings
) -> tuple[list[str], list[RunCheckpoints], int]:
    """(run ids, their checkpoints, rows left out for carrying neither metric).
    FAILED_PRECONDITION naming the metric when runs lack it or hold values a fit cannot use."""
    loss_name, accuracy_name = settings.loss_metric, settings.accuracy_metric
    by_run: dict[str, list[RunRecord]] = {}
    skipped = 0
    for record in records:
        has = (loss_name in record.metrics, accuracy_name in record.metrics)
        if has == (False, False):
            skipped += 1
            continue
        if not all(has):
            missing = loss_name if not has[0] else accuracy_name
            raise Infeasible(
                f"run {record.run_id!r} (step {record.step}) has metric "
                f"{(accuracy_name if not has[1] else loss_name)!r} but not {missing!r}: every "
                "checkpoint of a task fit needs both the task's loss and its accuracy",
                field=f"task.{'loss_metric' if missing == loss_name else 'accuracy_metric'}",
            )
        by_run.setdefault(record.run_id, []).append(record)
    if not by_run:
        raise Infeasible(
            f"no run of the family has the metrics {loss_name!r} and {accuracy_name!r}: add runs "
            f"with columns metric:{loss_name} and metric:{accuracy_name}",
            field="task.loss_metric",
        )
    if len(by_run) < MIN_RUNS:
        raise Infeasible(
            f"only {len(by_run)} runs have the metrics {loss_name!r} and {accuracy_name!r}; "
            f"step 1 fits five parameters and needs at least {MIN_RUNS} runs",
            field="task.loss_metric",
        )
    runs = []
    for run_id, rows in by_run.items():
        rows.sort(key=lambda r: (r.tokens, -1 if r.step is None else r.step))
        losses = [r.metrics[loss_name] for r in rows]
        accuracies = [r.metrics[accuracy_name] for r in rows]
        if not all(v > 0 for v in losses):
            raise Infeasible(
                f"run {run_id!r} has a {loss_name!r} <= 0; a task loss must be > 0",
                field="task.loss_metric",
            )
        if not all(0 <= v <= 1 for v in accuracies):
            raise Infeasible(
                f"run {run_id!r} has a {accuracy_name!r} outside [0, 1]; accuracies are fractions",
                field="task.accuracy_metric",
            )
        runs.append(
            RunCheckpoints.of(rows[-1].params, [r.tokens for r in rows], losses, accuracies)
        )
    return list(by_run), runs, skipped


@dataclass(frozen=True)
class PreparedTaskFit:
    """A validated task fit with its runs shaped: what an operation runs."""

    family: str
    job: TaskFitJob
    settings: TaskSettings
    run_ids: list[str]
    options: dict[str, str]
    resamples: int
    seed: int
    make_current: bool | None
    expected_revision: int | None

    def work(self, services: FitServices) -> Work:
        async def run(operation_id: str, report: ReportProgress) -> bytes | None:
            await execute(self, services, operation_id, report)
            return None  # the store completed the operation with the law

        return run


def prepare_task_fit(
    family: str,
    settings: TaskSettings,
    records: list[RunRecord],
    resamples: int,
    seed: int,
    make_current: bool | None,
    expected_revision: int | None,
) -> PreparedTaskFit:
    """Shape the family's rows into ladder runs (CPU work: call it off the event loop)."""
    run_ids, runs, skipped = task_runs(records, settings)
    job = TaskFitJob(tuple(runs), settings.chance, settings.skip_fraction, settings.window)
    options = {**settings.options(), "bootstrap": str(resamples), "seed": str(seed)}
    if skipped:
        options["ignored_rows"] = f"{skipped} rows without the task's metrics"
    return PreparedTaskFit(
        family, job.validated(), settings, run_ids, options, resamples, seed, make_current,
        expected_revision,
    )  # fmt: skip


async def execute(
    prepared: PreparedTaskFit, services: FitServices, operation_id: str, report: ReportProgress
) -> None:
    """Fit and bootstrap in the pool; store the version with the operation's completion."""
    job = prepared.job
    report(Progress("fit", 0, 1))
    law = await services.fit_pool.run(job.fit)
    report(Progress("fit", 1, 1))
    rows = await _bootstrap(prepared, services, report)
    ensemble = Ensemble.of(rows)
    record = FitRecord(
        options={**prepared.options, **_spread_options(law)},
        run_ids=prepared.run_ids,
        diagnostics=_diagnostics(job, law, ensemble.failed),
        intervals={k: [lo, hi] for k, (lo, hi) in ensemble.intervals(TASK_LAW_NAMES).items()},
        ensemble=ensemble.vectors.tolist(),
    )
    stored = TaskLinkLaw.from_fit(prepared.settings.name, law)
    checkpoints = sum(run.tokens.size for run in job.runs)
    note = (
        f"step 1 on the final checkpoints of {len(job.runs)} runs, step 2 on their "
        f"{checkpoints} checkpoints after the first {prepared.settings.skip_fraction:g}"
    )
    make_current = True if prepared.make_current is None else prepared.make_current
    report(Progress("store", 0, 1))
    try:
        await asyncio.to_thread(
            functools.partial(
                services.store.put_law,
                prepared.family,
                task_form(prepared.settings.name),
                stored.to_mapping(),
                TASK_FIT_METHOD,
                CITATION,
                note,
                prepared.expected_revision,
                record,
                make_current,
                operation_id=operation_id,
            )
        )
    finally:  # even when the caller went away mid-write
        services.laws.invalidate(prepared.family)


async def _bootstrap(
    prepared: PreparedTaskFit, services: FitServices, report: ReportProgress
) -> np.ndarray:
    """The resamples' rows, in draw order, refitted in chunks spread over the fit pool."""
    total = prepared.resamples
    if total == 0:
        return np.empty((0, len(TASK_LAW_NAMES)))
    samples = run_resamples(len(prepared.job.runs), total, prepared.seed)
    count = min(total, max(4 * services.fit_pool.processes, total // 10))
    chunks = np.array_split(np.arange(total), count)

    async def chunk(index: int) -> tuple[int, np.ndarray]:
        part = await services.fit_pool.run(
            prepared.job.bootstrap, [samples[i] for i in chunks[index]]
        )
        return index, part

    pending = [asyncio.ensure_future(chunk(i)) for i in range(len(chunks))]
    parts: dict[int, np.ndarray] = {}
    try:
        for finished in asyncio.as_completed(pending):
            index, part = await finished
            parts[index] = part
            report(Progress("bootstrap", sum(len(p) for p in parts.values()), total))
    finally:
        for future in pending:
            future.cancel()
    return np.concatenate([parts[i] for i in range(len(chunks))])


def _spread_options(law: TaskScalingLaw) -> dict[str, str]:
    spread = law.spread
    if spread is None:
        return {}
    return {f"spread_{name}": repr(getattr(spread, name)) for name in SPREAD_FIELDS}


def _diagnostics(job: TaskFitJob, law: TaskScalingLaw, failed: int) -> dict[str, object]:
    """Step 1's fit quality on log task loss at the runs' ends (the points it was fitted to)."""
    ends = [final_point(run, job.window) for run in job.runs]
    predicted = np.array(
        [law.loss_law.loss(run.params, d) for run, (d, _) in zip(job.runs, ends, strict=True)]
    )
    residual = np.log(predicted) - np.log([loss for _, loss in ends])
    return {
        "rmse_log_loss": float(np.sqrt(np.mean(residual**2))),
        "max_abs_log_loss": float(np.max(np.abs(residual))),
        "runs": int(sum(run.tokens.size for run in job.runs)),
        "training_runs": len(job.runs),
        "on_bound": [],
        "objective": float(np.sum(residual**2)),
        "failed_resamples": failed,
        "warnings": [],
    }
