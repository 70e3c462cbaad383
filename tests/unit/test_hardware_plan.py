"""Time and cost of a training plan, and Kaplan et al.'s critical batch (arXiv 2001.08361,
Table 5: B_crit(L) = 2.1e8 / L^(1/0.21) tokens; LAWS.md §2.4), against hand arithmetic."""

from __future__ import annotations

import math

import pytest

from planner.errors import InvalidInput
from planner.hyperparams import (
    CriticalBatchLaw,
    HardwareProfile,
    critical_batch,
    critical_batch_check,
    plan_training,
)

# 512 accelerators at 989 TFLOP/s (H100 SXM dense BF16), 40% MFU, $2 per accelerator-hour.
H100S = HardwareProfile(
    accelerators=512, peak_flops_per_second=989e12, mfu=0.4, price_per_accelerator_hour=2.0
)


def test_time_and_cost_of_a_70b_run() -> None:
    plan = plan_training(7e10, 1.4e12, H100S, batch_tokens=4_194_304)
    # 6 * 7e10 * 1.4e12 = 5.88e23 FLOPs; the cluster does 512 * 989e12 * 0.4 = 2.025472e17
    # FLOP/s; 5.88e23 / 2.025472e17 = 2.903027e6 s = 806.396 h.
    assert plan.flops == pytest.approx(5.88e23, rel=1e-12)
    assert plan.wall_clock_hours == pytest.approx(806.396, rel=1e-6)
    # 806.396 h * 512 = 412,874.9 accelerator-hours; * $2 = $825,750.
    assert plan.accelerator_hours == pytest.approx(412_874.9, rel=1e-6)
    assert plan.cost == pytest.approx(825_749.7, rel=1e-6)
    # 1.4e12 / 4,194,304 = 333,786.01 -> 333,787 steps (the last one partial).
    assert plan.steps == 333_787
    assert plan.batch_tokens == 4_194_304
    # Step Law lr: 1.797 * 7e10^-0.7129 * 1.4e12^0.3075 (hand: 1.81e-4).
    assert plan.learning_rate == pytest.approx(1.797 * 7e10**-0.7129 * 1.4e12**0.3075, rel=1e-12)
    assert plan.learning_rate == pytest.approx(1.81e-4, rel=5e-3)
    assert plan.critical_batch is None


def test_default_batch_is_the_step_law_batch() -> None:
    plan = plan_training(7e9, 1.4e12, H100S)
    batch = 0.5807 * 1.4e12**0.5709  # ~4.99e6 tokens
    assert plan.batch_tokens == pytest.approx(batch, rel=1e-12)
    assert plan.steps == math.ceil(1.4e12 / batch) == 280_513
    assert plan.learning_rate == pytest.approx(9.35e-4, abs=5e-7)


def test_flops_per_param_token_and_no_price() -> None:
    unpriced = HardwareProfile(accelerators=8, peak_flops_per_second=1e15, mfu=0.5)
    plan = plan_training(1e9, 2e10, unpriced, flops_per_param_token=8.0, batch_tokens=1e6)
    # 8 * 1e9 * 2e10 = 1.6e20 FLOPs at 8 * 1e15 * 0.5 = 4e15 FLOP/s: 4e4 s = 11.111 h.
    assert plan.wall_clock_hours == pytest.approx(4e4 / 3600, rel=1e-12)
    assert plan.accelerator_hours == pytest.approx(8 * 4e4 / 3600, rel=1e-12)
    assert plan.cost is None
    assert plan.steps == 20_000


def test_critical_batch_at_loss_two() -> None:
    # 2^(1/0.21) = 2^4.7619 = 27.13; 2.1e8 / 27.13 = 7.741e6 tokens.
    assert critical_batch(2.0) == pytest.approx(7.741e6, rel=1e-3)
    check = critical_batch_check(2.0, 4_194_304)
    # S/S_min = 1 + 7.741e6 / 4.194e6 = 2.846; E/E_min = 1 + 4.194e6 / 7.741e6 = 1.542.
    assert check.step_penalty == pytest.approx(2.846, rel=1e-3)
    assert check.token_penalty == pytest.approx(1.542, rel=1e-3)
    assert not check.exceeds_critical
    # Kaplan's trade-off: (S/S_min - 1)(E/E_min - 1) = 1.
    assert (check.step_penalty - 1) * (check.token_penalty - 1) == pytest.approx(1.0)


def test_batch_above_critical_is_flagged() -> None:
    # 2.5^(1/0.21) = e^(4.7619 * 0.91629) = 78.5; B_crit = 2.1e8 / 78.5 = 2.675e6 < 4.19e6.
    plan = plan_training(7e10, 1.4e12, H100S, batch_tokens=4_194_304, loss=2.5)
    assert plan.critical_batch is not None
    assert plan.critical_batch.critical_batch_tokens == pytest.approx(2.675e6, rel=1e-3)
    assert plan.critical_batch.exceeds_critical
    # At B = B_crit training takes 2 S_min steps and 2 E_min tokens (Kaplan §5.1).
    at = critical_batch_check(2.5, critical_batch(2.5))
    assert (at.step_penalty, at.token_penalty) == pytest.approx((2.0, 2.0))
    assert not at.exceeds_critical


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"accelerators": 0}, "hardware.accelerators"),
        ({"accelerators": 2.5}, "hardware.accelerators"),
        ({"peak_flops_per_second": math.nan}, "hardware.peak_flops_per_second"),
        ({"peak_flops_per_second": math.inf}, "hardware.peak_flops_per_second"),
        ({"peak_flops_per_second": 0.0}, "hardware.peak_flops_per_second"),
        ({"mfu": 0.0}, "hardware.mfu"),
        ({"mfu": 1.5}, "hardware.mfu"),
        ({"mfu": math.nan}, "hardware.mfu"),
        ({"price_per_accelerator_hour": -1.0}, "hardware.price_per_accelerator_hour"),
        ({"price_per_accelerator_hour": math.inf}, "hardware.price_per_accelerator_hour"),
    ],
)
def test_profile_rejects_bad_values(changes: dict[str, float], field: str) -> None:
    values: dict[str, float] = {"accelerators": 8, "peak_flops_per_second": 1e15, "mfu": 0.5}
    values.update(changes)
    with pytest.raises(InvalidInput) as caught:
        HardwareProfile(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_full_mfu_and_free_compute_are_allowed() -> None:
    profile = HardwareProfile(1, 1e15, 1.0, price_per_accelerator_hour=0.0)
    assert plan_training(1e9, 1e10, profile).cost == 0.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"params": -1.0}, "params"),
        ({"tokens": math.nan}, "tokens"),
        ({"batch_tokens": 0.0}, "batch_tokens"),
        ({"flops_per_param_token": math.inf}, "flops_per_param_token"),
        ({"loss": 0.0}, "loss"),
        ({"flops": -1.0}, "flops"),
        # 2e10 tokens in batches of 1e-9 tokens: 2e19 steps, more than an int64 counts.
        ({"batch_tokens": 1e-9}, "batch_tokens"),
    ],
)
def test_plan_rejects_bad_values(changes: dict[str, float], field: str) -> None:
    values: dict[str, float] = {"params": 1e9, "tokens": 2e10}
    values.update(changes)
    with pytest.raises(InvalidInput) as caught:
        plan_training(hardware=H100S, **values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_other_critical_batch_constants() -> None:
    # B_* = 1e8, alpha_B = 0.25: B_crit(2) = 1e8 / 2^4 = 6.25e6 tokens.
    law = CriticalBatchLaw(B_star=1e8, alpha_B=0.25)
    assert critical_batch(2.0, law) == pytest.approx(6.25e6, rel=1e-12)
    plan = plan_training(7e9, 1.4e12, H100S, batch_tokens=5e6, loss=2.0, critical_batch_law=law)
    assert plan.critical_batch is not None
    assert plan.critical_batch.step_penalty == pytest.approx(1 + 6.25e6 / 5e6, rel=1e-12)
    with pytest.raises(InvalidInput) as caught:
        CriticalBatchLaw(B_star=2.1e8, alpha_B=0.0)
    assert caught.value.field == "critical_batch.alpha_B"


def test_flops_given_replace_k_n_d_for_time() -> None:
    """A sparse run: its dense N sets the learning rate, its (smaller) FLOPs the time."""
    unpriced = HardwareProfile(accelerators=8, peak_flops_per_second=1e15, mfu=0.5)
    plan = plan_training(1e9, 2e10, unpriced, batch_tokens=1e6, flops=8e19)
    # 8e19 FLOPs at 8 * 1e15 * 0.5 = 4e15 FLOP/s: 2e4 s.
    assert plan.flops == 8e19
    assert plan.wall_clock_hours == pytest.approx(2e4 / 3600, rel=1e-12)
    assert plan.learning_rate == pytest.approx(1.797 * 1e9**-0.7129 * 2e10**0.3075, rel=1e-12)


def test_a_cluster_rate_out_of_float_range_is_refused() -> None:
    # Each value is valid, but 5e-324 FLOP/s x 0.5 MFU rounds to 0 FLOP/s.
    tiny = HardwareProfile(accelerators=1, peak_flops_per_second=5e-324, mfu=0.5)
    with pytest.raises(InvalidInput) as caught:
        plan_training(1e9, 2e10, tiny)
    assert caught.value.field == "hardware.peak_flops_per_second"
