"""Typed results the client returns; plain data, JSON-ready via `as_dict()`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Band:
    """p5, p50 and p95 of a plan's field over the law version's bootstrap ensemble."""

    p5: float
    p50: float
    p95: float


@dataclass(frozen=True)
class LawInfo:
    form: str
    version: int
    method: str


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    param_convention: str
    flops_per_param_token: float
    revision: int
    run_count: int
    laws: list[LawInfo]
    create_time: str
    update_time: str
    # What the family's losses measure ("" when not said).
    metric: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    """One row: a finished run, or (with `step`) a checkpoint of the run named by `run_id`;
    (run_id, step) is unique within a family. `weight`: relative weight in fits (None: 1).
    `lr`: the learning rate at the checkpoint's step, or a finished run's peak learning rate;
    `batch_tokens`: the batch size in tokens (the loss-curve laws and the Step Law use them).
    `metrics`: named values of the row, e.g. a task's loss and accuracy (what task laws fit)."""

    run_id: str
    params: float
    tokens: float
    loss: float
    unique_tokens: float | None = None
    flops: float | None = None
    step: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    weight: float | None = None
    lr: float | None = None
    batch_tokens: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AddRunsResult:
    added: int
    unchanged: int
    family: Family


@dataclass(frozen=True)
class DeleteRunsResult:
    """Rows deleted (each checkpoint counts one) and the family after the change."""

    deleted: int
    family: Family


@dataclass(frozen=True)
class RunsPage:
    """One page of ListRuns; pass `next_page_token` for the next ("" when there is none)."""

    runs: list[Run]
    next_page_token: str


@dataclass(frozen=True)
class LawSelector:
    """Which law version: form "" is the family's default form, version 0 the current one."""

    family: str
    form: str = ""
    version: int = 0


@dataclass(frozen=True)
class FitOptions:
    """How a fit treats the runs (FitLaw, BacktestLaw); the defaults change nothing.

    checkpoints: "final" (each run's last checkpoint; the server's default when ""), "all" or
        "after_fraction" (each run's checkpoints at or after `after_fraction` of its tokens).
    tie_exponents: fit alpha = beta.
    fixed: parameters held at these values (E, A, B, alpha, beta).
    borrow_from, borrow: take the named parameters (all five when empty) from that law version.
    overestimate_penalty: over-estimates cost this many times more (0: symmetric; Huber only).
    """

    checkpoints: str = ""
    after_fraction: float = 0.0
    tie_exponents: bool = False
    fixed: dict[str, float] = field(default_factory=dict)
    borrow_from: LawSelector | None = None
    borrow: list[str] = field(default_factory=list)
    overestimate_penalty: float = 0.0


@dataclass(frozen=True)
class CandidateScore:
    """One candidate of method "auto" and its held-out error (`failure` when not scored)."""

    candidate: str
    mean_abs_relative_error: float
    max_abs_relative_error: float
    failure: str = ""


@dataclass(frozen=True)
class AutoChoice:
    """How method "auto" chose: the winner, every candidate in the order tried, folds scored."""

    chosen: str
    candidates: list[CandidateScore]
    folds: int
    # Why no backtest was possible (too few runs), when none was.
    note: str = ""


@dataclass(frozen=True)
class Law:
    family: str
    form: str
    version: int
    parameters: dict[str, float]
    method: str
    citation: str
    note: str
    create_time: str
    # Fitted versions only: goodness of fit (rmse_log_loss, max_abs_log_loss, runs (rows),
    # training_runs, on_bound, objective, failed_resamples, warnings, residual_sd_log_loss),
    # 95% bootstrap intervals, ensemble size, runs used, the fit's options.
    diagnostics: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    ensemble_size: int = 0
    run_ids: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    # Whether this version is the family's current law of its form.
    current: bool = False
    # How method "auto" chose, when it did.
    auto: AutoChoice | None = None

    @property
    def warnings(self) -> list[str]:
        """Reasons not to trust the fit as is (a fit with warnings is not made current
        unless asked)."""
        return list(self.diagnostics.get("warnings", []))

    @property
    def residual_sd_log_loss(self) -> float | None:
        value = self.diagnostics.get("residual_sd_log_loss")
        return None if value is None else float(value)

    @property
    def run_count(self) -> int:
        """Rows the version was fitted to."""
        return len(self.run_ids)


@dataclass(frozen=True)
class Prediction:
    loss: float
    interval: tuple[float, float] | None
    law: LawInfo
    # What `interval` covers: "band" (where the law's mean loss lies) or "prediction" (one new
    # run, the band widened by the fit's residual noise).
    interval_kind: str = "band"


@dataclass(frozen=True)
class Hardware:
    """A cluster a plan runs on (HardwareProfile): `accelerators` used together, the peak FLOP/s
    of one, the MFU reached in (0, 1]; with a price per accelerator-hour the plan is costed, and
    `batch_tokens` replaces the Step Law's batch. The server checks the values."""

    accelerators: int
    peak_flops_per_second: float
    mfu: float
    price_per_accelerator_hour: float | None = None
    batch_tokens: float | None = None


@dataclass(frozen=True)
class CriticalBatchCheck:
    """Kaplan et al.'s critical batch at the plan's loss against its batch. Indicative only:
    Kaplan's constants were measured on WebText2 with their tokenizer."""

    loss: float
    critical_batch_tokens: float
    # S / S_min = 1 + B_crit / B and E / E_min = 1 + B / B_crit.
    step_penalty: float
    token_penalty: float
    exceeds_critical: bool


@dataclass(frozen=True)
class TrainingSetup:
    """How a plan would be trained on the request's hardware (TrainingSetup)."""

    learning_rate: float
    batch_tokens: float
    steps: int
    wall_clock_hours: float
    accelerator_hours: float
    # None when the profile has no price.
    cost: float | None
    # The Step Law that gave the learning rate (and the batch, unless the profile set one).
    hyperparameter_law: LawInfo
    critical_batch: CriticalBatchCheck | None


@dataclass(frozen=True)
class TaskPrediction:
    """A downstream task's predicted accuracy (fraction) and task loss (the unit of the metric
    its law was fitted to); `interval`: 95% band of the accuracy over the law's bootstrap
    (None without one); floor/ceiling: the link's range; noisy: the task's checkpoints were
    noisier than the family's other tasks' (less reliable)."""

    accuracy: float
    task_loss: float
    interval: tuple[float, float] | None
    floor: float
    ceiling: float
    noisy: bool
    law: LawInfo


@dataclass(frozen=True)
class ComputeOptimalPlan:
    params: float
    tokens: float
    loss: float
    flops: float
    tokens_per_param: float
    binding: list[str]
    intervals: dict[str, Band]
    solver: str
    law: LawInfo
    # D / unique tokens, when the plan priced repeated data.
    epochs: float | None = None
    # On the request's hardware; None without a hardware profile.
    training: TrainingSetup | None = None


@dataclass(frozen=True)
class HeldOutRun:
    run_id: str
    flops: float
    observed_loss: float
    predicted_loss: float
    relative_error: float


@dataclass(frozen=True)
class MethodBacktest:
    method: str
    parameters: dict[str, float]
    failure: str
    mean_abs_relative_error: float
    max_abs_relative_error: float
    runs: list[HeldOutRun]
    # Method auto: the candidate it chose on the training runs (e.g. "huber+tied").
    chosen: str = ""


@dataclass(frozen=True)
class Backtest:
    train_runs: int
    test_runs: int
    methods: list[MethodBacktest]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IsoflopVertex:
    flops: float
    params: float
    tokens: float
    runs: int


@dataclass(frozen=True)
class IsoflopFit:
    """Approach 2: vertices per budget, N_opt = k_n C^a and D_opt = k_d C^b, and its caveat."""

    vertices: list[IsoflopVertex]
    params_exponent: float
    params_coefficient: float
    tokens_exponent: float
    tokens_coefficient: float
    caveat: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CurvePoint:
    x: float
    value: float
    extrapolation: bool


@dataclass(frozen=True)
class BrokenPowerLawFit:
    parameters: dict[str, float]
    breaks: int
    held_out_error: dict[int, float]
    fitted_up_to: float
    predictions: list[CurvePoint]
    runs: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LifetimePlan:
    params: float
    tokens: float
    loss: float
    training_flops: float
    inference_flops: float
    total_flops: float
    tokens_per_param: float
    cost: float


@dataclass(frozen=True)
class InferencePlan:
    plan: LifetimePlan
    chinchilla: LifetimePlan
    saving_flops: float
    saving_cost: float
    overtraining_ratio: float
    binding: list[str]
    solver: str
    law: LawInfo
    intervals: dict[str, Band] = field(default_factory=dict)
    # Training of `plan` on the request's hardware; None without a hardware profile.
    training: TrainingSetup | None = None


@dataclass(frozen=True)
class OvertrainingPlan:
    multiplier: float
    params: float
    tokens: float
    flops: float
    loss: float
    downstream_error: float | None
    best_multiplier: float
    loss_penalty: float
    compute_ratio: float
    law: LawInfo
    training: TrainingSetup | None = None


@dataclass(frozen=True)
class DataPool:
    """A data pool offered to PlanDataMix (Goyal form)."""

    name: str
    size: float
    # Either utility and half_life, or (samples seen, error) observations to fit them to.
    utility: float = 0.0
    half_life: float = 0.0
    observations: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class FittedPool:
    name: str
    utility: float
    half_life: float
    squared_error: float


@dataclass(frozen=True)
class PoolShare:
    name: str
    samples: float
    epochs: float


@dataclass(frozen=True)
class DataMixCandidate:
    pools: list[str]
    predicted_error: float
    compare_errors: list[float]


@dataclass(frozen=True)
class DataMixPlan:
    pools: list[PoolShare]
    predicted_error: float
    candidates: list[DataMixCandidate]
    solver: str
    fitted: list[FittedPool] = field(default_factory=list)


@dataclass(frozen=True)
class DenseModel:
    params: float
    tokens: float
    loss: float


@dataclass(frozen=True)
class SparsityPlan:
    dense_params: float
    average_params: float
    final_params: float
    final_sparsity: float
    tokens: float
    loss: float
    flops: float
    schedule: list[tuple[float, float]]
    dense_same_size: DenseModel
    binding: list[str]
    notes: list[str]
    solver: str
    law: LawInfo
    intervals: dict[str, Band]
    # Training of the dense start on the request's hardware; time counts the plan's FLOPs.
    training: TrainingSetup | None = None


@dataclass(frozen=True)
class BudgetJob:
    """One job sharing a budget in AllocateBudget; None means no bound."""

    name: str
    family: str
    weight: float | None = None
    min_flops: float | None = None
    max_flops: float | None = None
    max_params: float | None = None
    max_tokens: float | None = None
    form: str = ""
    version: int = 0


@dataclass(frozen=True)
class JobAllocation:
    name: str
    flops: float
    params: float
    tokens: float
    loss: float
    binding: list[str]
    marginal_value: float
    law: LawInfo
    intervals: dict[str, Band] = field(default_factory=dict)


@dataclass(frozen=True)
class Allocation:
    jobs: list[JobAllocation]
    marginal_value: float
    objective: float
    budget_binding: bool
    solver: str


@dataclass(frozen=True)
class OperationProgress:
    """How far an operation's work has got: stage ("queued", "fit", "bootstrap", "store",
    "backtest"), units done and units in all."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class OperationError:
    """Why an operation failed or was cancelled: the status code name the synchronous call
    would have returned ("FAILED_PRECONDITION", "CANCELLED", ...) and the server's message."""

    code: str
    message: str


@dataclass(frozen=True)
class Operation:
    """A long-running fit or backtest on the server (it keeps running when its caller goes).

    state: "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED" or "INTERRUPTED" (its server
        stopped; the next one retries it). `done` once SUCCEEDED, FAILED or CANCELLED.
    law (a fit) or backtest (a backtest) once SUCCEEDED; error once FAILED or CANCELLED. A fit's
    law is None if its family was deleted since.
    """

    name: str
    kind: str
    family: str
    state: str
    done: bool
    progress: OperationProgress
    create_time: str
    update_time: str
    attempt: int
    law: Law | None = None
    backtest: Backtest | None = None
    error: OperationError | None = None


# Arrays compare element-wise, so these batch answers compare by identity (eq=False).
@dataclass(frozen=True, eq=False)
class ComputeOptimalBatch:
    """Plans for many budgets or loss targets: parallel arrays, one entry per row in request
    order; `binding` lists each row's active constraints, `solver` what answered it."""

    params: NDArray[np.float64]
    tokens: NDArray[np.float64]
    loss: NDArray[np.float64]
    flops: NDArray[np.float64]
    binding: list[list[str]]
    solver: list[str]
    law: LawInfo

    def __len__(self) -> int:
        return int(self.params.size)


@dataclass(frozen=True, eq=False)
class PredictionBatch:
    """Predicted losses for many (N, D) points, in request order; `low` and `high` bound each
    point's 95% band when it was asked for (NaN where the ensemble gives no band), else None."""

    loss: NDArray[np.float64]
    low: NDArray[np.float64] | None
    high: NDArray[np.float64] | None
    law: LawInfo

    def __len__(self) -> int:
        return int(self.loss.size)


@dataclass(frozen=True)
class WinnerRange:
    """A range of the comparison's axis and the recipe ("first", "second" or "tie") with the
    lower loss in it."""

    low: float
    high: float
    winner: str


@dataclass(frozen=True)
class MultiplierAt:
    """What the second recipe needs, over `budget`, to reach the first's loss there (inf: it
    never does); `band` over both laws' ensembles (None without both)."""

    budget: float
    first_loss: float
    multiplier: float
    band: Band | None


@dataclass(frozen=True)
class Comparison:
    """CompareLaws' answer: crossovers on the axis, winner per range, multipliers at the
    budgets, the two laws (with their families) and both curves for plotting."""

    crossovers: list[float]
    ranges: list[WinnerRange]
    multipliers: list[MultiplierAt]
    first_family: str
    first_law: LawInfo
    second_family: str
    second_law: LawInfo
    axis_values: list[float]
    first_loss: list[float]
    second_loss: list[float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
