"""How a plan would be trained on the request's hardware: learning rate, batch, steps, time and
cost (the `training` field of the plan responses; issue 12, item 3).

The request's HardwareProfile is decoded here, errors naming `hardware.<field>` (or
`inference_hardware.<field>`). The Step Law is the request's `hyperparameter_law`, else the
catalogue family `step-law-2025` (the published law itself, version 0, when a database has no
such family). The critical-batch constants are the current law of the
catalogue family `critical-batch-kaplan-2020` (a PutLaw there changes them); when that family
was deleted, or holds no such law, Kaplan's published constants (planner.hyperparams) stand in.

Both laws are cached beside the final-loss law cache, with its lifetime, and go stale with any
write to their family (its generation counter): once warm, a plan with hardware costs two
dictionary lookups plus the profile's and the domain's checks and arithmetic, about 10 us in
all (measured in-process); a plan without one, two field checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from planner.catalog import CRITICAL_BATCH_FAMILY, STEP_LAW_FAMILY
from planner.errors import InvalidInput
from planner.forms import CRITICAL_BATCH_FORM, STEP_LAW_FORM, Kind, parse_any_law, require_kind
from planner.hyperparams import (
    KAPLAN_CRITICAL_BATCH,
    CriticalBatchLaw,
    HardwareProfile,
    StepLaw,
    TrainingPlan,
    plan_training,
)
from planner.hyperparams.hardware import SECONDS_PER_HOUR
from planner.hyperparams.step_law import PUBLISHED_STEP_LAW
from planner.planning.inference import Costs
from planner.validation import positive
from planner_api.v1 import planner_pb2 as pb
from server import mapping
from server.law_cache import FreshEntries, LawCache
from server.store import NotFound
from server.store.records import LawRecord

HARDWARE: Final = "hardware"
INFERENCE_HARDWARE: Final = "inference_hardware"
HYPERPARAMETER_LAW: Final = "hyperparameter_law"
PRICE: Final = "price_per_accelerator_hour"
CostField = Literal["training_weight", "inference_weight", "training_mfu", "inference_mfu"]
# PlanInference's fields that weight lifetime cost when it is not priced in money.
COST_FIELDS: tuple[CostField, ...] = get_args(CostField)
DEFAULT_STEP_LAW = pb.LawSelector(family=STEP_LAW_FAMILY)

# RpcBase._law_record: (selector, field prefix, kind) -> the stored version.
RecordLoader = Callable[[pb.LawSelector, str, Kind | None], LawRecord]
PlanRequest = (
    pb.PlanComputeOptimalRequest
    | pb.PlanInferenceRequest
    | pb.PlanOvertrainingRequest
    | pb.PlanSparsityRequest
)


@dataclass(frozen=True)
class Hardware:
    """A decoded HardwareProfile message; `batch_tokens` overrides the Step Law's batch."""

    profile: HardwareProfile
    batch_tokens: float | None
    field: str

    @property
    def price(self) -> float | None:
        return self.profile.price_per_accelerator_hour


def decode_hardware(message: pb.HardwareProfile, field: str) -> Hardware:
    """The profile, validated; errors name `<field>.<name>`."""
    price = message.price_per_accelerator_hour if message.HasField(PRICE) else None
    try:
        profile = HardwareProfile(
            accelerators=message.accelerators,
            peak_flops_per_second=message.peak_flops_per_second,
            mfu=message.mfu,
            price_per_accelerator_hour=price,
        )
    except InvalidInput as error:
        # The domain names its fields "hardware.<name>".
        name = (error.field or "").rpartition(".")[2]
        raise InvalidInput(f"{field}.{name}", error.reason) from None
    batch = None
    if message.HasField("batch_tokens"):
        batch = positive(f"{field}.batch_tokens", message.batch_tokens)
    return Hardware(profile, batch, field)


def money_costs(
    request: pb.PlanInferenceRequest, training: PreparedTraining | None
) -> Costs | None:
    """PlanInference's lifetime cost in money when the request has both hardware profiles,
    else None (the weights and MFUs price it). Each phase's FLOPs / (peak · MFU) are
    accelerator-seconds at its price per hour: weight price / (3600 · peak), MFU the profile's."""
    if not request.HasField(INFERENCE_HARDWARE):
        return None
    if training is None:
        raise InvalidInput(INFERENCE_HARDWARE, f"prices serving only with {HARDWARE}; set both")
    serving = decode_hardware(request.inference_hardware, INFERENCE_HARDWARE)
    if serving.batch_tokens is not None:
        raise InvalidInput(f"{INFERENCE_HARDWARE}.batch_tokens", "is a training setting")
    for name in COST_FIELDS:
        if request.HasField(name):
            raise InvalidInput(
                name, f"must not be set with {HARDWARE} and {INFERENCE_HARDWARE}: cost is money"
            )
    return _priced(training.hardware, serving)


def _priced(training: Hardware, serving: Hardware) -> Costs:
    weights = []
    for hardware in (training, serving):
        price = hardware.price
        if price is None or not price > 0:
            raise InvalidInput(
                f"{hardware.field}.{PRICE}",
                f"must be > 0 to price lifetime cost in money (with both {HARDWARE} and "
                f"{INFERENCE_HARDWARE}), got {price}",
            )
        weight = price / (SECONDS_PER_HOUR * hardware.profile.peak_flops_per_second)
        if not 0 < weight < math.inf:
            raise InvalidInput(
                f"{hardware.field}.peak_flops_per_second", "gives a price per FLOP out of range"
            )
        weights.append(weight)
    return Costs(
        training_weight=weights[0],
        inference_weight=weights[1],
        training_mfu=training.profile.mfu,
        inference_mfu=serving.profile.mfu,
    )


@dataclass(frozen=True)
class ResolvedStepLaw:
    law: StepLaw
    # Built once per cached law: every TrainingSetup names it.
    summary: pb.LawSummary


@dataclass(frozen=True)
class PreparedTraining:
    """What a plan's training setup needs besides the plan: hardware and both laws."""

    hardware: Hardware
    step_law: ResolvedStepLaw
    critical_batch: CriticalBatchLaw

    def fill(
        self,
        target: pb.TrainingSetup,
        params: float,
        tokens: float,
        loss: float,
        flops_per_param_token: float,
        flops: float | None = None,
    ) -> None:
        """`target` (a response's `training`) set to the setup of a run of `params` on `tokens`,
        checked at `loss`; time counts `flops` when given (a sparse run), else
        flops_per_param_token · params · tokens."""
        try:
            plan = plan_training(
                params,
                tokens,
                self.hardware.profile,
                flops_per_param_token=flops_per_param_token,
                batch_tokens=self.hardware.batch_tokens,
                loss=loss,
                step_law=self.step_law.law,
                critical_batch_law=self.critical_batch,
                flops=flops,
            )
        except InvalidInput as error:
            if error.field != "batch_tokens":
                raise
            # Too many steps: the request's batch, or the Step Law's.
            given = self.hardware.batch_tokens is not None
            field = f"{self.hardware.field}.batch_tokens" if given else HYPERPARAMETER_LAW
            raise InvalidInput(field, error.reason) from None
        fill_training(target, plan, self.step_law.summary)


def fill_training(target: pb.TrainingSetup, plan: TrainingPlan, step_law: pb.LawSummary) -> None:
    # Field by field into the response: no intermediate messages to build and copy.
    target.learning_rate = plan.learning_rate
    target.batch_tokens = plan.batch_tokens
    target.steps = plan.steps
    target.wall_clock_hours = plan.wall_clock_hours
    target.accelerator_hours = plan.accelerator_hours
    if plan.cost is not None:
        target.cost = plan.cost
    target.hyperparameter_law.CopyFrom(step_law)
    check = plan.critical_batch
    if check is not None:
        out = target.critical_batch
        out.loss = check.loss
        out.critical_batch_tokens = check.critical_batch_tokens
        out.step_penalty = check.step_penalty
        out.token_penalty = check.token_penalty
        out.exceeds_critical = check.exceeds_critical


# The Step Law as published, answering when the catalogue family is gone (version 0: not stored).
PUBLISHED = ResolvedStepLaw(
    PUBLISHED_STEP_LAW, pb.LawSummary(form=STEP_LAW_FORM, version=0, method="published")
)


class TrainingLaws:
    """Resolves the Step Law and the critical-batch constants, cached (see the module doc)."""

    def __init__(self, laws: LawCache, load_record: RecordLoader) -> None:
        self._laws = laws
        self._load_record = load_record
        self._step_laws: FreshEntries[ResolvedStepLaw] = FreshEntries(laws)
        self._critical: FreshEntries[CriticalBatchLaw] = FreshEntries(laws)

    async def prepare(self, request: PlanRequest) -> PreparedTraining | None:
        """The request's hardware and both laws; None without hardware (and then nothing is
        looked up: plans without hardware cost what they did)."""
        if not request.HasField(HARDWARE):
            if request.HasField(HYPERPARAMETER_LAW):
                raise InvalidInput(HYPERPARAMETER_LAW, f"is used only with {HARDWARE}; set both")
            return None
        hardware = decode_hardware(request.hardware, HARDWARE)
        selector = (
            request.hyperparameter_law if request.HasField(HYPERPARAMETER_LAW) else DEFAULT_STEP_LAW
        )
        step_law = await self.step_law(selector, default=not request.HasField(HYPERPARAMETER_LAW))
        return PreparedTraining(hardware, step_law, await self.critical_batch())

    async def step_law(self, selector: pb.LawSelector, default: bool = False) -> ResolvedStepLaw:
        """The selected Step Law; with `default` (none was asked for), the published one when
        the catalogue family is missing (a database made before it was catalogued, or the
        family deleted)."""
        # The default has a key of its own: its fallback must not answer a named selector.
        form = "(default)" if default else selector.form
        key = (selector.family, form, selector.version)

        def load() -> ResolvedStepLaw:
            try:
                return self._load_step_law(selector)
            except NotFound:
                if not default:
                    raise
                return PUBLISHED

        return await self._step_laws.fetch(key, load)

    def _load_step_law(self, selector: pb.LawSelector) -> ResolvedStepLaw:
        prefix = f"{HYPERPARAMETER_LAW}."
        record = self._load_record(selector, prefix, "hyperparameters")
        require_kind(record.form, "hyperparameters", "A plan's training setup")
        law = parse_any_law(record.form, record.parameters, f"{prefix}parameters")
        assert isinstance(law, StepLaw)  # the only hyperparameters form
        summary = mapping.law_summary(record)
        summary.family = record.family  # any family's Step Law may answer: say whose
        return ResolvedStepLaw(law, summary)

    async def critical_batch(self) -> CriticalBatchLaw:
        key = (CRITICAL_BATCH_FAMILY, CRITICAL_BATCH_FORM, 0)
        return await self._critical.fetch(key, self._load_critical_batch)

    def _load_critical_batch(self) -> CriticalBatchLaw:
        selector = pb.LawSelector(family=CRITICAL_BATCH_FAMILY, form=CRITICAL_BATCH_FORM)
        try:
            record = self._load_record(selector, "", "critical_batch")
        except NotFound:
            return KAPLAN_CRITICAL_BATCH  # the catalogue family was deleted
        law = parse_any_law(record.form, record.parameters)
        assert isinstance(law, CriticalBatchLaw)
        return law
