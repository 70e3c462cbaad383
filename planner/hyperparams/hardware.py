"""Wall-clock time and cost of a training plan on a hardware profile, and Kaplan et al.'s
critical-batch check of its batch size.

Time: a run of N params on D tokens costs k·N·D FLOPs (k = 6 for dense transformers: forward 2,
backward 4); the cluster delivers accelerators · peak · MFU FLOP/s, MFU being the fraction of
peak the training actually achieves.

Critical batch (Kaplan et al. 2020, arXiv 2001.08361, §5.1 and Table 5; LAWS.md §2.4): at loss L
the batch B_crit(L) = B_* / L^(1/alpha_B) trades steps for data. Training with batch B takes
S = S_min · (1 + B_crit/B) steps and E = E_min · (1 + B/B_crit) tokens to reach L; above B_crit
extra batch buys few steps and costs data. Kaplan's L is nats/token on WebText2 with their BPE
vocabulary, so B_crit for another tokenizer or corpus is indicative only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import InvalidInput
from planner.hyperparams.step_law import PUBLISHED_STEP_LAW, StepLaw
from planner.validation import finite, positive

# Kaplan et al. 2020, Table 5: B_crit(L) = B_* / L^(1/alpha_B), alpha_B = 0.21,
# B_* = 2.1e8 tokens (the text rounds it to "~2e8").
KAPLAN_ALPHA_B = 0.21
KAPLAN_B_STAR = 2.1e8
DENSE_FLOPS_PER_PARAM_TOKEN = 6.0
SECONDS_PER_HOUR = 3600.0
MAX_STEPS = 2.0**63


@dataclass(frozen=True)
class HardwareProfile:
    """`accelerators` devices, each of `peak_flops_per_second`, achieving model FLOPs
    utilisation `mfu` in (0, 1]; optional price per accelerator-hour (any currency)."""

    accelerators: int
    peak_flops_per_second: float
    mfu: float
    price_per_accelerator_hour: float | None = None

    def __post_init__(self) -> None:
        count = self.accelerators
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInput("hardware.accelerators", "must be an integer >= 1")
        positive("hardware.peak_flops_per_second", self.peak_flops_per_second)
        mfu = finite("hardware.mfu", self.mfu)
        if not 0 < mfu <= 1:
            raise InvalidInput("hardware.mfu", "must be in (0, 1]")
        if self.price_per_accelerator_hour is not None:
            price = finite("hardware.price_per_accelerator_hour", self.price_per_accelerator_hour)
            if price < 0:
                raise InvalidInput("hardware.price_per_accelerator_hour", "must be >= 0")

    @property
    def flops_per_second(self) -> float:
        """What the whole cluster achieves: accelerators · peak · MFU."""
        return self.accelerators * self.peak_flops_per_second * self.mfu


@dataclass(frozen=True)
class CriticalBatchCheck:
    """Kaplan's critical batch at `loss` against the chosen batch (tokens).

    step_penalty = S/S_min = 1 + B_crit/B; token_penalty = E/E_min = 1 + B/B_crit."""

    loss: float
    critical_batch_tokens: float
    batch_tokens: float
    step_penalty: float
    token_penalty: float
    exceeds_critical: bool


@dataclass(frozen=True)
class TrainingPlan:
    params: float
    tokens: float
    flops: float
    learning_rate: float
    batch_tokens: float
    steps: int
    wall_clock_hours: float
    accelerator_hours: float
    # None when the profile has no price.
    cost: float | None
    # None when no loss was given to check the batch against.
    critical_batch: CriticalBatchCheck | None


@dataclass(frozen=True)
class CriticalBatchLaw:
    """B_crit(L) = B_star / L^(1/alpha_B) tokens; the names are Kaplan's symbols."""

    B_star: float
    alpha_B: float  # noqa: N815

    def __post_init__(self) -> None:
        positive("critical_batch.B_star", self.B_star)
        positive("critical_batch.alpha_B", self.alpha_B)


KAPLAN_CRITICAL_BATCH = CriticalBatchLaw(B_star=KAPLAN_B_STAR, alpha_B=KAPLAN_ALPHA_B)


def critical_batch(loss: float, law: CriticalBatchLaw = KAPLAN_CRITICAL_BATCH) -> float:
    """B_crit(L) = B_* / L^(1/alpha_B), in tokens (Kaplan's constants unless `law` is given)."""
    value = positive("loss", loss)
    return float(law.B_star / value ** (1.0 / law.alpha_B))


def critical_batch_check(
    loss: float, batch_tokens: float, law: CriticalBatchLaw = KAPLAN_CRITICAL_BATCH
) -> CriticalBatchCheck:
    """How far a batch of `batch_tokens` sits from the critical batch at `loss`."""
    batch = positive("batch_tokens", batch_tokens)
    critical = critical_batch(loss, law)
    return CriticalBatchCheck(
        loss=float(loss),
        critical_batch_tokens=critical,
        batch_tokens=batch,
        step_penalty=1.0 + critical / batch,
        token_penalty=1.0 + batch / critical,
        exceeds_critical=batch > critical,
    )


def plan_training(
    params: float,
    tokens: float,
    hardware: HardwareProfile,
    *,
    flops_per_param_token: float = DENSE_FLOPS_PER_PARAM_TOKEN,
    batch_tokens: float | None = None,
    loss: float | None = None,
    step_law: StepLaw = PUBLISHED_STEP_LAW,
    critical_batch_law: CriticalBatchLaw = KAPLAN_CRITICAL_BATCH,
    flops: float | None = None,
) -> TrainingPlan:
    """Learning rate (Step Law), batch (given, else the Step Law's), steps, time and cost of
    training `params` non-embedding parameters on `tokens` tokens; with `loss` (nats/token),
    also the critical-batch check at that loss. `flops` replaces k·N·D for time when the run
    does other work than its dense size says (a sparse run: k·N_avg·D)."""
    n = positive("params", params)
    d = positive("tokens", tokens)
    k = positive("flops_per_param_token", flops_per_param_token)
    if not isinstance(hardware, HardwareProfile):
        raise InvalidInput("hardware", "must be a HardwareProfile")
    batch = (
        step_law.batch_tokens(d) if batch_tokens is None else positive("batch_tokens", batch_tokens)
    )
    # Optimizer steps are counted in an int64 by the API.
    if not d / batch < MAX_STEPS:
        raise InvalidInput("batch_tokens", f"gives {d / batch:g} steps for {d:g} tokens")
    work = k * n * d if flops is None else positive("flops", flops)
    if not math.isfinite(work):
        raise InvalidInput("tokens", "the plan's FLOPs overflow a float")
    # Each factor of the cluster's rate is in range; their product may underflow.
    rate = hardware.flops_per_second
    hours = work / rate / SECONDS_PER_HOUR if rate > 0 else math.inf
    if not math.isfinite(hours):
        raise InvalidInput(
            "hardware.peak_flops_per_second",
            f"accelerators x peak x MFU = {rate:g} FLOP/s takes too long for {work:g} FLOPs",
        )
    accelerator_hours = hours * hardware.accelerators
    price = hardware.price_per_accelerator_hour
    return TrainingPlan(
        params=n,
        tokens=d,
        flops=work,
        learning_rate=step_law.learning_rate(n, d),
        batch_tokens=batch,
        # The last step may be partial: count it.
        steps=max(1, math.ceil(d / batch)),
        wall_clock_hours=hours,
        accelerator_hours=accelerator_hours,
        cost=None if price is None else accelerator_hours * price,
        critical_batch=(
            None if loss is None else critical_batch_check(loss, batch, critical_batch_law)
        ),
    )
