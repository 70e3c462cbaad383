"""Plans on hardware: learning rate and batch (Step Law, Li et al. 2025), steps, time, cost and
Kaplan's critical-batch check, through a real server. Raw stubs: the wire contract.

Expected values are written out here: the Step Law as published (lr = 1.797 N^-0.7129
D^0.3075, batch = 0.5807 D^0.5709; shared data README), Kaplan's B_crit(L) = 2.1e8 /
L^(1/0.21) (Table 5; LAWS.md §2.4) with hand arithmetic, and time and cost from the plan's N
and D by hand.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.service.refusals import refused
from tests.service.server_process import ServerProcess

HOFFMANN = "chinchilla-hoffmann-2022"
SARDANA = "inference-sardana-2023"
GADRE = "overtraining-gadre-2024-redpajama"
EPOCH = "chinchilla-epoch-2024"
# Hoffmann et al.'s Approach 3 at TeX-source precision (LAWS.md §1.4).
E, A, B = math.exp(0.5267228), math.exp(6.0073404), math.exp(6.0179186)
ALPHA, BETA = 0.33917084, 0.2849083
# 512 H100 SXM (989 TFLOP/s dense BF16) at 40% MFU, $2.50 an accelerator-hour.
GPUS, PEAK, MFU, PRICE = 512, 9.89e14, 0.4, 2.5
SECONDS_PER_HOUR = 3600.0

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION


def step_law_lr(n: float, d: float) -> float:
    return 1.797 * n**-0.7129 * d**0.3075


def step_law_batch(d: float) -> float:
    return 0.5807 * d**0.5709


def kaplan_critical_batch(loss: float) -> float:
    return 2.1e8 / loss ** (1 / 0.21)


def h100s(**changes: Any) -> pb.HardwareProfile:
    values: dict[str, Any] = {
        "accelerators": GPUS,
        "peak_flops_per_second": PEAK,
        "mfu": MFU,
        "price_per_accelerator_hour": PRICE,
    }
    values.update(changes)
    return pb.HardwareProfile(**{k: v for k, v in values.items() if v is not None})


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[rpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.PlannerServiceStub(channel)


def optimal(
    stub: rpc.PlannerServiceStub, family: str = HOFFMANN, compute: float = 1e23, **fields: Any
) -> pb.PlanComputeOptimalResponse:
    request = pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=family), **fields)
    if "target_loss" not in fields:
        request.budget.flops = compute
    reply: pb.PlanComputeOptimalResponse = stub.PlanComputeOptimal(request, timeout=30)
    return reply


# -- PlanComputeOptimal ------------------------------------------------------------------------


def test_compute_optimal_on_h100s(stub: rpc.PlannerServiceStub) -> None:
    plan = optimal(stub, hardware=h100s())
    # The closed-form optimum (LAWS.md §11.2): N = G (C/6)^a, G = (alpha A / (beta B))^(1/(a+b)).
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    n = g * (1e23 / 6) ** (BETA / (ALPHA + BETA))
    assert plan.params == pytest.approx(n, rel=1e-9)
    assert plan.tokens == pytest.approx(1e23 / (6 * n), rel=1e-9)
    training = plan.training
    # 1e23 FLOPs at 512 * 9.89e14 * 0.4 = 2.02547e17 FLOP/s: 4.937e5 s = 137.1 h.
    hours = 1e23 / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR
    assert training.wall_clock_hours == pytest.approx(hours, rel=1e-12)
    assert training.wall_clock_hours == pytest.approx(137.14, rel=1e-4)
    assert training.accelerator_hours == pytest.approx(hours * GPUS, rel=1e-12)
    cost = 6 * plan.params * plan.tokens / (PEAK * MFU) / SECONDS_PER_HOUR * PRICE
    assert training.HasField("cost") and training.cost == pytest.approx(cost, rel=1e-12)
    assert training.learning_rate == pytest.approx(step_law_lr(plan.params, plan.tokens), 1e-12)
    assert training.batch_tokens == pytest.approx(step_law_batch(plan.tokens), rel=1e-12)
    assert training.steps == math.ceil(plan.tokens / step_law_batch(plan.tokens))
    law = training.hyperparameter_law
    assert (law.form, law.version, law.method) == ("step_law", 1, "published")
    # Kaplan's check at the plan's loss (E + A/N^alpha + B/D^beta).
    loss = E + A / plan.params**ALPHA + B / plan.tokens**BETA
    check = training.critical_batch
    assert check.loss == pytest.approx(loss, rel=1e-12)
    critical = kaplan_critical_batch(loss)
    assert check.critical_batch_tokens == pytest.approx(critical, rel=1e-12)
    assert check.step_penalty == pytest.approx(1 + critical / training.batch_tokens, rel=1e-12)
    assert check.token_penalty == pytest.approx(1 + training.batch_tokens / critical, rel=1e-12)
    assert check.exceeds_critical == (training.batch_tokens > critical)


def test_step_law_reference_point(stub: rpc.PlannerServiceStub) -> None:
    """N = 7e9, D = 1.4e12 (the authors' example): lr 9.35e-4, batch 5.0e6 tokens."""
    # 6 * 7e9 * 1.4e12 = 5.88e22 FLOPs with N capped at 7e9 (the optimum is ~14B): D = 1.4e12.
    plan = optimal(stub, compute=5.88e22, max_params=7e9, hardware=h100s(mfu=0.5))
    assert list(plan.binding) == ["compute", "max_params"]
    assert plan.tokens == pytest.approx(1.4e12, rel=1e-12)
    assert plan.training.learning_rate == pytest.approx(9.35e-4, abs=5e-7)
    assert plan.training.batch_tokens == pytest.approx(5.0e6, rel=2e-3)
    # 1.4e12 / 4.99e6 tokens a step.
    assert plan.training.steps == pytest.approx(280_513, abs=1)


def test_kaplan_critical_batch_reference_values(stub: rpc.PlannerServiceStub) -> None:
    """Table 5 constants by hand: 2^(1/0.21) = 27.13, so B_crit(2.0) = 2.1e8 / 27.13 = 7.741e6;
    2.5^(1/0.21) = 78.5, so B_crit(2.5) = 2.675e6 tokens."""
    batch = 4_194_304.0
    at_two = optimal(stub, target_loss=2.0, hardware=h100s(batch_tokens=batch)).training
    assert at_two.batch_tokens == batch
    check = at_two.critical_batch
    assert check.loss == pytest.approx(2.0, rel=1e-12)
    assert check.critical_batch_tokens == pytest.approx(7.741e6, rel=1e-3)
    # S/S_min = 1 + 7.741e6 / 4.194e6 = 2.846; E/E_min = 1 + 4.194e6 / 7.741e6 = 1.542.
    assert check.step_penalty == pytest.approx(2.846, rel=1e-3)
    assert check.token_penalty == pytest.approx(1.542, rel=1e-3)
    assert not check.exceeds_critical
    at_two_and_a_half = optimal(stub, target_loss=2.5, hardware=h100s(batch_tokens=batch))
    check = at_two_and_a_half.training.critical_batch
    assert check.critical_batch_tokens == pytest.approx(2.675e6, rel=1e-3)
    assert check.exceeds_critical


def test_no_price_no_cost(stub: rpc.PlannerServiceStub) -> None:
    plan = optimal(stub, hardware=h100s(price_per_accelerator_hour=None))
    assert plan.HasField("training") and not plan.training.HasField("cost")
    assert not optimal(stub).HasField("training")


def test_family_flops_per_param_token_times_the_run(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    """A family of k = 8 FLOPs per param-token: the plan's FLOPs are 8 N D, and so is its time."""
    family = pb.Family(name=family_name, param_convention=pb.PARAM_CONVENTION_TOTAL)
    family.flops_per_param_token = 8.0
    stub.CreateFamily(pb.CreateFamilyRequest(family=family), timeout=30)
    parameters = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    stub.PutLaw(pb.PutLawRequest(family=family_name, form="chinchilla", parameters=parameters))
    plan = optimal(stub, family=family_name, hardware=h100s())
    assert plan.flops == pytest.approx(1e23, rel=1e-12)
    assert plan.params * plan.tokens == pytest.approx(1e23 / 8, rel=1e-12)
    hours = 8 * plan.params * plan.tokens / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR
    assert plan.training.wall_clock_hours == pytest.approx(hours, rel=1e-12)


def test_repeated_data_plan_has_its_training(stub: rpc.PlannerServiceStub) -> None:
    plan = optimal(
        stub, "data-constrained-muennighoff-2023", 1e22, unique_tokens=25e9, hardware=h100s()
    )
    assert plan.HasField("epochs")
    assert plan.training.learning_rate == pytest.approx(step_law_lr(plan.params, plan.tokens))
    hours = 6 * plan.params * plan.tokens / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR
    assert plan.training.wall_clock_hours == pytest.approx(hours, rel=1e-12)


# -- the Step Law selected ---------------------------------------------------------------------

MY_STEP_LAW = {
    "lr_coefficient": 2.0,
    "lr_params_exponent": -0.5,
    "lr_tokens_exponent": 0.2,
    "batch_coefficient": 1.0,
    "batch_tokens_exponent": 0.5,
}


def test_a_stored_step_law_is_used_when_selected(
    stub: rpc.PlannerServiceStub, family_name: str
) -> None:
    stub.CreateFamily(
        pb.CreateFamilyRequest(
            family=pb.Family(name=family_name, param_convention=pb.PARAM_CONVENTION_NON_EMBEDDING)
        )
    )
    stub.PutLaw(pb.PutLawRequest(family=family_name, form="step_law", parameters=MY_STEP_LAW))
    selector = pb.LawSelector(family=family_name)
    plan = optimal(stub, hardware=h100s(), hyperparameter_law=selector)
    n, d = plan.params, plan.tokens
    assert plan.training.learning_rate == pytest.approx(2.0 * n**-0.5 * d**0.2, rel=1e-12)
    assert plan.training.batch_tokens == pytest.approx(d**0.5, rel=1e-12)
    # A new version is used at once (this server's writes clear its caches).
    second = {**MY_STEP_LAW, "lr_coefficient": 3.0}
    stub.PutLaw(pb.PutLawRequest(family=family_name, form="step_law", parameters=second))
    again = optimal(stub, hardware=h100s(), hyperparameter_law=selector)
    assert again.training.learning_rate == pytest.approx(3.0 * n**-0.5 * d**0.2, rel=1e-12)
    assert again.training.hyperparameter_law.version == 2
    assert again.training.hyperparameter_law.family == family_name
    # And an older version when named.
    selector.version = 1
    old = optimal(stub, hardware=h100s(), hyperparameter_law=selector)
    assert old.training.learning_rate == pytest.approx(plan.training.learning_rate, rel=1e-12)


def test_laws_of_other_forms_are_refused_as_hyperparameter_laws(
    stub: rpc.PlannerServiceStub,
) -> None:
    chinchilla = pb.LawSelector(family=HOFFMANN, form="chinchilla")
    refused(
        lambda: optimal(stub, hardware=h100s(), hyperparameter_law=chinchilla),
        FAILED,
        "",
        "'step_law'",
    )
    kaplan = pb.LawSelector(family="critical-batch-kaplan-2020", form="critical_batch")
    refused(
        lambda: optimal(stub, hardware=h100s(), hyperparameter_law=kaplan), FAILED, "", "step_law"
    )
    # Without a form only Step Laws are looked for, as final-loss queries look only for theirs.
    refused(
        lambda: optimal(stub, hardware=h100s(), hyperparameter_law=pb.LawSelector(family=HOFFMANN)),
        grpc.StatusCode.NOT_FOUND,
        "hyperparameter_law.form",
    )
    refused(
        lambda: optimal(stub, hardware=h100s(), hyperparameter_law=pb.LawSelector(family="nope")),
        grpc.StatusCode.NOT_FOUND,
        "hyperparameter_law.family",
    )


# -- bad hardware ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mfu": 0.0}, "hardware.mfu"),
        ({"mfu": 1.5}, "hardware.mfu"),
        ({"mfu": math.nan}, "hardware.mfu"),
        ({"peak_flops_per_second": math.nan}, "hardware.peak_flops_per_second"),
        ({"peak_flops_per_second": 0.0}, "hardware.peak_flops_per_second"),
        # Valid alone, but 5e-324 x 0.5 underflows to 0 FLOP/s.
        ({"peak_flops_per_second": 5e-324, "mfu": 0.5}, "hardware.peak_flops_per_second"),
        ({"accelerators": 0}, "hardware.accelerators"),
        ({"accelerators": -3}, "hardware.accelerators"),
        ({"price_per_accelerator_hour": -1.0}, "hardware.price_per_accelerator_hour"),
        ({"price_per_accelerator_hour": math.inf}, "hardware.price_per_accelerator_hour"),
        ({"batch_tokens": 0.0}, "hardware.batch_tokens"),
        ({"batch_tokens": math.nan}, "hardware.batch_tokens"),
        # 3e11 tokens in batches of 1e-8 tokens: more steps than an int64 holds.
        ({"batch_tokens": 1e-8}, "hardware.batch_tokens"),
    ],
)
def test_bad_hardware_is_refused(
    stub: rpc.PlannerServiceStub, changes: dict[str, Any], field: str
) -> None:
    refused(lambda: optimal(stub, hardware=h100s(**changes)), INVALID, field)


def test_hyperparameter_law_without_hardware_is_refused(stub: rpc.PlannerServiceStub) -> None:
    selector = pb.LawSelector(family="step-law-2025")
    refused(lambda: optimal(stub, hyperparameter_law=selector), INVALID, "hyperparameter_law")


# -- the other plans ---------------------------------------------------------------------------


def test_overtraining_plan(stub: rpc.PlannerServiceStub) -> None:
    request = pb.PlanOvertrainingRequest(
        law=pb.LawSelector(family=GADRE), multiplier=80.0, hardware=h100s()
    )
    request.budget.flops = 1e22
    plan = stub.PlanOvertraining(request, timeout=30)
    # C = 6 N D with D = 80 N: N = sqrt(1e22 / 480).
    n = math.sqrt(1e22 / 480)
    assert plan.params == pytest.approx(n, rel=1e-12)
    training = plan.training
    assert training.wall_clock_hours == pytest.approx(
        1e22 / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR, rel=1e-12
    )
    assert training.learning_rate == pytest.approx(step_law_lr(n, 80 * n), rel=1e-9)
    assert training.batch_tokens == pytest.approx(step_law_batch(80 * n), rel=1e-9)
    assert training.critical_batch.loss == pytest.approx(plan.loss, rel=1e-12)
    bad = pb.PlanOvertrainingRequest(law=pb.LawSelector(family=GADRE), hardware=h100s(mfu=2.0))
    bad.budget.flops = 1e22
    refused(lambda: stub.PlanOvertraining(bad, timeout=30), INVALID, "hardware.mfu")


def test_sparsity_plan_trains_the_dense_start_on_the_plans_flops(
    stub: rpc.PlannerServiceStub,
) -> None:
    request = pb.PlanSparsityRequest(
        law=pb.LawSelector(family=EPOCH), final_sparsity=0.5, hardware=h100s()
    )
    request.budget.flops = 1e23
    plan = stub.PlanSparsity(request, timeout=60)
    assert plan.dense_params > plan.average_params
    training = plan.training
    # Sparse FLOPs: the plan's 1e23 (k N_avg D), not k N_dense D.
    assert plan.flops == pytest.approx(1e23, rel=1e-9)
    assert training.wall_clock_hours == pytest.approx(
        plan.flops / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR, rel=1e-12
    )
    assert training.learning_rate == pytest.approx(
        step_law_lr(plan.dense_params, plan.tokens), rel=1e-12
    )
    assert training.critical_batch.loss == pytest.approx(plan.loss, rel=1e-12)


# -- PlanInference -----------------------------------------------------------------------------

# Serving on accelerators of 3.12e14 FLOP/s (A100 dense BF16) at 25% MFU, $1.20 an hour.
SERVE_PEAK, SERVE_MFU, SERVE_PRICE = 3.12e14, 0.25, 1.2
SARDANA_TARGET = 1.69 + 406.4 / 13e9**0.336 + 410.7 / 5.765e11**0.283


def inference_request(**fields: Any) -> pb.PlanInferenceRequest:
    return pb.PlanInferenceRequest(
        law=pb.LawSelector(family=SARDANA), inference_tokens=2e12, **fields
    )


def serving(**changes: Any) -> pb.HardwareProfile:
    values = {
        "accelerators": 8,
        "peak_flops_per_second": SERVE_PEAK,
        "mfu": SERVE_MFU,
        "price_per_accelerator_hour": SERVE_PRICE,
        **changes,
    }
    return pb.HardwareProfile(**values)


def money(training_flops: float, inference_flops: float) -> float:
    """Accelerator-hours of each phase at its price, by hand."""
    training = training_flops / (PEAK * MFU) / SECONDS_PER_HOUR * PRICE
    return training + inference_flops / (SERVE_PEAK * SERVE_MFU) / SECONDS_PER_HOUR * SERVE_PRICE


def test_inference_plan_priced_in_money(stub: rpc.PlannerServiceStub) -> None:
    request = inference_request(
        target_loss=SARDANA_TARGET, hardware=h100s(), inference_hardware=serving()
    )
    result = stub.PlanInference(request, timeout=60)
    plan, chinchilla = result.plan, result.chinchilla
    assert plan.training_flops == pytest.approx(6 * plan.params * plan.tokens, rel=1e-12)
    assert plan.inference_flops == pytest.approx(2 * plan.params * 2e12, rel=1e-12)
    assert plan.cost == pytest.approx(money(plan.training_flops, plan.inference_flops), 1e-9)
    assert chinchilla.cost == pytest.approx(
        money(chinchilla.training_flops, chinchilla.inference_flops), rel=1e-9
    )
    assert result.saving_cost == pytest.approx(chinchilla.cost - plan.cost, rel=1e-9)
    # A serving FLOP costs 2.43x a training one here (1.2 / (3.12e14 * 0.25) = 1.54e-14 against
    # 2.5 / (9.89e14 * 0.4) = 6.32e-15): a smaller model than the FLOP-count plan's 6.969e9
    # (LAWS.md §11.5).
    assert plan.params < 6.9e9
    assert result.saving_cost > 0
    training = result.training
    assert training.learning_rate == pytest.approx(step_law_lr(plan.params, plan.tokens), 1e-12)
    # The training part of the lifetime cost is what the training setup costs.
    assert training.cost == pytest.approx(money(plan.training_flops, 0.0), rel=1e-9)
    assert training.critical_batch.loss == pytest.approx(plan.loss, rel=1e-12)
    # A lifetime budget is then money too: $300,000 (the plan above costs about $200,000).
    budget = inference_request(lifetime_budget=3e5, hardware=h100s(), inference_hardware=serving())
    within = stub.PlanInference(budget, timeout=60).plan
    assert within.cost == pytest.approx(3e5, rel=1e-9)
    assert money(within.training_flops, within.inference_flops) == pytest.approx(3e5, rel=1e-9)


def test_inference_plan_with_training_hardware_only(stub: rpc.PlannerServiceStub) -> None:
    flops_plan = stub.PlanInference(inference_request(target_loss=SARDANA_TARGET), timeout=60)
    result = stub.PlanInference(
        inference_request(target_loss=SARDANA_TARGET, hardware=h100s()), timeout=60
    )
    # Cost stays in FLOPs: the plan is the FLOP-count plan; the training setup is added.
    assert result.plan.params == pytest.approx(flops_plan.plan.params, rel=1e-12)
    assert result.plan.cost == pytest.approx(result.plan.total_flops, rel=1e-12)
    hours = result.plan.training_flops / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR
    assert result.training.wall_clock_hours == pytest.approx(hours, rel=1e-12)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"inference_hardware": serving()}, "inference_hardware"),
        (
            {"hardware": h100s(), "inference_hardware": serving(), "training_weight": 2.0},
            "training_weight",
        ),
        (
            {"hardware": h100s(), "inference_hardware": serving(), "inference_mfu": 0.5},
            "inference_mfu",
        ),
        (
            {"hardware": h100s(price_per_accelerator_hour=None), "inference_hardware": serving()},
            "hardware.price_per_accelerator_hour",
        ),
        (
            {"hardware": h100s(), "inference_hardware": serving(price_per_accelerator_hour=0.0)},
            "inference_hardware.price_per_accelerator_hour",
        ),
        ({"hardware": h100s(), "inference_hardware": serving(mfu=0.0)}, "inference_hardware.mfu"),
        (
            {"hardware": h100s(), "inference_hardware": serving(peak_flops_per_second=math.nan)},
            "inference_hardware.peak_flops_per_second",
        ),
        (
            {"hardware": h100s(), "inference_hardware": serving(batch_tokens=1e6)},
            "inference_hardware.batch_tokens",
        ),
        ({"hardware": h100s(accelerators=0)}, "hardware.accelerators"),
        (
            # $1.20 / (3600 s x 5e-324 FLOP/s) per FLOP is beyond float range.
            {"hardware": h100s(), "inference_hardware": serving(peak_flops_per_second=5e-324)},
            "inference_hardware.peak_flops_per_second",
        ),
    ],
)
def test_inference_pricing_refusals(
    stub: rpc.PlannerServiceStub, fields: dict[str, Any], field: str
) -> None:
    request = inference_request(target_loss=SARDANA_TARGET, **fields)
    refused(lambda: stub.PlanInference(request, timeout=60), INVALID, field)


# -- the critical-batch constants come from the catalogue --------------------------------------


def test_critical_batch_constants_follow_the_catalogue(tmp_path: Path) -> None:
    """A new version of the catalogue's critical-batch law is used; with the family deleted,
    Kaplan's published constants stand in, and likewise the published Step Law. Own server: the
    catalogue is shared state."""
    with (
        ServerProcess(tmp_path / "planner.db") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = rpc.PlannerServiceStub(channel)
        family = "critical-batch-kaplan-2020"
        stored = stub.GetLaw(pb.GetLawRequest(family=family), timeout=30).law
        assert stored.form == "critical_batch" and "2001.08361" in stored.source.citation
        assert dict(stored.parameters) == {"B_star": 2.1e8, "alpha_B": 0.21}
        at_two = optimal(stub, target_loss=2.0, hardware=h100s()).training.critical_batch
        assert at_two.critical_batch_tokens == pytest.approx(7.741e6, rel=1e-3)
        stub.PutLaw(
            pb.PutLawRequest(
                family=family, form="critical_batch", parameters={"B_star": 1e8, "alpha_B": 0.25}
            )
        )
        changed = optimal(stub, target_loss=2.0, hardware=h100s()).training.critical_batch
        # 1e8 / 2^4 = 6.25e6 tokens.
        assert changed.critical_batch_tokens == pytest.approx(6.25e6, rel=1e-12)
        stub.DeleteFamily(pb.DeleteFamilyRequest(name=family))
        fallback = optimal(stub, target_loss=2.0, hardware=h100s()).training.critical_batch
        assert fallback.critical_batch_tokens == pytest.approx(7.741e6, rel=1e-3)
        # Without the Step Law's family the published law answers (version 0, not stored);
        # a Step Law the caller names must exist.
        stub.DeleteFamily(pb.DeleteFamilyRequest(name="step-law-2025"))
        plan = optimal(stub, hardware=h100s())
        assert plan.training.hyperparameter_law.version == 0
        n, d = plan.params, plan.tokens
        assert plan.training.learning_rate == pytest.approx(
            1.797 * n**-0.7129 * d**0.3075, rel=1e-12
        )
        refused(
            lambda: optimal(
                stub, hardware=h100s(), hyperparameter_law=pb.LawSelector(family="step-law-2025")
            ),
            grpc.StatusCode.NOT_FOUND,
            "hyperparameter_law.family",
        )


# -- the README's example ----------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
PLANNER = Path(sys.executable).parent / "planner"


def readme_planner_commands() -> list[list[str]]:
    """The `planner` lines of the README's "Learning rate, batch, time and cost of a plan"."""
    text = README.read_text()
    start = text.index("### Learning rate, batch, time and cost of a plan")
    block = re.search(r"```sh\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None
    lines = block.group(1).splitlines()
    return [shlex.split(line) for line in lines if line.startswith(".venv/bin/planner ")]


def test_readme_example_runs_as_written(server: ServerProcess) -> None:
    """The section's CLI lines, run with --json; the figures its comments show are checked
    against hand arithmetic (and the printed precision) here."""
    answers = []
    for command in readme_planner_commands():
        called = subprocess.run(
            [str(PLANNER), "--target", server.target, "--json", *command[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert called.returncode == 0, called.stderr
        answers.append(json.loads(called.stdout))
    optimal_answer, hours_answer, inference_answer, overtrain_answer = answers

    # 1e23 FLOPs at 512 x 9.89e14 x 0.4 FLOP/s is 137.14 h; x 512 x $2.50.
    n, d = optimal_answer["params"], optimal_answer["tokens"]
    assert (n, d) == (pytest.approx(1.81472e10, rel=5e-6), pytest.approx(9.18417e11, rel=5e-6))
    training = optimal_answer["training"]
    assert training["learning_rate"] == pytest.approx(step_law_lr(n, d), rel=1e-9)
    assert training["learning_rate"] == pytest.approx(0.0004166, rel=1e-4)
    assert training["batch_tokens"] == pytest.approx(step_law_batch(d), rel=1e-9)
    assert training["batch_tokens"] == pytest.approx(3.9233e6, rel=1e-4)
    assert training["steps"] == math.ceil(d / step_law_batch(d)) == 234094
    hours = 1e23 / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR
    assert training["wall_clock_hours"] == pytest.approx(hours, rel=1e-9)
    assert training["wall_clock_hours"] == pytest.approx(137.142, abs=5e-4)
    assert training["accelerator_hours"] == pytest.approx(70216.8, abs=0.05)
    assert training["cost"] == pytest.approx(hours * GPUS * PRICE, rel=1e-9)
    assert training["cost"] == pytest.approx(175542.07, abs=5e-3)
    check = training["critical_batch"]
    critical = kaplan_critical_batch(optimal_answer["loss"])
    assert check["critical_batch_tokens"] == pytest.approx(critical, rel=1e-9)
    assert check["critical_batch_tokens"] == pytest.approx(7.95562e6, rel=5e-6)
    assert check["step_penalty"] == pytest.approx(1 + critical / training["batch_tokens"])
    assert (round(check["step_penalty"], 2), round(check["token_penalty"], 2)) == (3.03, 1.49)

    # The same --peak-flops and --mfu size the accelerator-hour budget and the cluster.
    assert hours_answer["flops"] == pytest.approx(2e5 * SECONDS_PER_HOUR * PEAK * MFU, rel=1e-12)
    assert hours_answer["flops"] == pytest.approx(2.84832e23, rel=5e-6)
    assert hours_answer["training"]["wall_clock_hours"] == pytest.approx(2e5 / GPUS, rel=1e-12)
    assert hours_answer["training"]["accelerator_hours"] == pytest.approx(2e5, rel=1e-12)
    assert hours_answer["training"]["cost"] == pytest.approx(2e5 * PRICE, rel=1e-12)

    # The CLI's JSON holds the inference-aware plan's fields at the top level.
    plan, chinchilla = inference_answer, inference_answer["chinchilla"]
    assert plan["cost"] == pytest.approx(money(plan["training_flops"], plan["inference_flops"]))
    assert plan["cost"] == pytest.approx(202603.06, abs=5e-3)
    assert chinchilla["cost"] == pytest.approx(302090.41, abs=5e-3)
    assert (plan["params"], chinchilla["params"]) == (
        pytest.approx(5.49687e9, rel=5e-6),
        pytest.approx(1.30307e10, rel=5e-6),
    )
    assert inference_answer["saving_cost"] == pytest.approx(chinchilla["cost"] - plan["cost"])
    assert inference_answer["saving_cost"] == pytest.approx(99487.35, abs=5e-3)
    assert inference_answer["training"]["cost"] == pytest.approx(
        plan["training_flops"] / (GPUS * PEAK * MFU) / SECONDS_PER_HOUR * GPUS * PRICE
    )
    assert inference_answer["training"]["cost"] == pytest.approx(108639.50, abs=5e-3)

    # The given batch: 4e6 tokens; 256 accelerators, unpriced.
    over = overtrain_answer["training"]
    assert over["batch_tokens"] == 4e6 and over["cost"] is None
    assert over["steps"] == math.ceil(overtrain_answer["tokens"] / 4e6) == 132096
    over_hours = 6 * overtrain_answer["params"] * overtrain_answer["tokens"] / (256 * PEAK * MFU)
    assert over["wall_clock_hours"] == pytest.approx(over_hours / SECONDS_PER_HOUR, rel=1e-9)
    assert over["wall_clock_hours"] == pytest.approx(57.4323, abs=5e-5)
    assert over["hyperparameter_law"] == {"form": "step_law", "version": 1, "method": "published"}
    check = over["critical_batch"]
    critical = kaplan_critical_batch(overtrain_answer["loss"])
    assert check["critical_batch_tokens"] == pytest.approx(critical, rel=1e-9)
    assert check["critical_batch_tokens"] == pytest.approx(3.47675e6, rel=5e-6)
    assert check["exceeds_critical"] is True
    assert check["token_penalty"] == pytest.approx(1 + 4e6 / critical)
    assert (round(check["step_penalty"], 2), round(check["token_penalty"], 2)) == (1.87, 2.15)
