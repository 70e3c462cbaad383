"""Per-step LR schedules (planner.curves.schedules).

The published check: Luo et al.'s loss curves (shared data lr_schedules/, from
thu-yao-01-luo/MultiPowerLaw loss_curve_repo @8da9f19, MIT) log the LR at every sampled step; the
builders must reproduce that column from the schedule definitions in the data README (warm-up
2,160 steps to 3e-4, floor 3e-5, ...). The other checks are plain loops over the formulas.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planner.curves import schedules
from planner.curves.schedules import MAX_STEPS, DecayShape, build_schedule, validate_lrs
from planner.errors import InvalidInput

PEAK, FLOOR, WARMUP = 3e-4, 3e-5, 2160
PUBLISHED = (
    "constant_24000",
    "constant_72000",
    "cosine_24000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
)


def published_schedule(name: str) -> np.ndarray:
    """The per-step schedule of one of the published runs, from its definition."""
    family, _, rest = name.partition("_")
    if family == "constant":
        return schedules.constant(int(rest), PEAK, warmup_steps=WARMUP)
    if family == "cosine":
        return schedules.cosine(int(rest), PEAK, FLOOR, warmup_steps=WARMUP)
    if family in ("wsd", "wsdld"):
        start, total = (int(v) for v in rest.split("_"))
        shape: DecayShape = "exponential" if family == "wsd" else "linear"
        return schedules.wsd(total, PEAK, FLOOR, WARMUP, decay_start=start, shape=shape)
    assert family == "wsdcon"
    return schedules.two_stage(16_000, PEAK, int(rest) * 1e-5, 8_000, warmup_steps=WARMUP)


def read_curve(root: Path, size: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, lr, loss) columns of a published curve."""
    table = np.loadtxt(
        root / "lr_schedules" / f"mpl_{size}" / f"{name}.csv", delimiter=",", skiprows=1
    )
    return table[:, 0].astype(np.intp), table[:, 1], table[:, 2]


@pytest.mark.parametrize("size", ["25M", "100M"])
@pytest.mark.parametrize("name", PUBLISHED)
def test_builders_reproduce_the_published_lr_column(
    shared_data: Path, size: str, name: str
) -> None:
    steps, lr, _ = read_curve(shared_data, size, name)
    # The CSVs sample every 128th step (one 64- or 96/224-step gap), never the warm-up: the
    # laws need every step, so the schedule is rebuilt from its definition and checked here.
    assert set(np.diff(steps).tolist()) <= {64, 96, 128, 224}
    rebuilt = published_schedule(name)
    assert steps.max() < rebuilt.size
    np.testing.assert_allclose(rebuilt[steps], lr, rtol=1e-12, atol=0)


def test_warmup_is_linear_from_zero_to_the_peak() -> None:
    lrs = schedules.constant(10, 1.0, warmup_steps=5)
    assert lrs.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert schedules.constant(3, 2.0).tolist() == [2.0, 2.0, 2.0]


def test_cosine_matches_its_formula() -> None:
    total, warmup, peak, floor = 50, 10, 1e-3, 1e-4
    lrs = schedules.cosine(total, peak, floor, warmup_steps=warmup)
    for s in range(warmup, total):
        expected = floor + 0.5 * (peak - floor) * (
            1 + math.cos(math.pi * (s - warmup) / (total - warmup))
        )
        assert lrs[s] == pytest.approx(expected, rel=1e-14)
    assert lrs[warmup] == peak
    assert np.all(np.diff(lrs[warmup:]) < 0)


@pytest.mark.parametrize("shape", ["linear", "exponential", "cosine", "sqrt"])
def test_wsd_decay_shapes(shape: DecayShape) -> None:
    total, peak, floor = 100, 1e-3, 1e-5
    lrs = schedules.wsd(total, peak, floor, warmup_steps=10, decay_fraction=0.2, shape=shape)
    start = 80  # the last 20% of 100 steps
    assert np.all(lrs[10:start] == peak)
    for s in range(start, total):
        p = (s - start) / (total - start)
        expected = {
            "linear": peak - (peak - floor) * p,
            "exponential": peak ** (1 - p) * floor**p,
            "cosine": floor + (peak - floor) * (1 + math.cos(math.pi * p)) / 2,
            "sqrt": peak - (peak - floor) * math.sqrt(p),
        }[shape]
        assert lrs[s] == pytest.approx(expected, rel=1e-13)
    # decay_start and decay_fraction describe the same schedule.
    same = schedules.wsd(total, peak, floor, warmup_steps=10, decay_start=start, shape=shape)
    np.testing.assert_array_equal(lrs, same)


def test_two_stage_and_build_by_name() -> None:
    lrs = build_schedule("two_stage", total_steps=6, peak_lr=1.0, second_lr=0.1, switch_step=4)
    assert lrs.tolist() == [1.0, 1.0, 1.0, 1.0, 0.1, 0.1]
    np.testing.assert_array_equal(
        build_schedule("cosine", total_steps=30, peak_lr=1.0, floor_lr=0.1, warmup_steps=3),
        schedules.cosine(30, 1.0, 0.1, 3),
    )
    # Edge fractions: no decay at all, or a decay over the whole post-warm-up run.
    assert np.all(schedules.wsd(20, 1.0, 0.1, decay_fraction=0.0) == 1.0)
    assert schedules.wsd(20, 1.0, 0.1, warmup_steps=5, decay_fraction=1.0)[5] == 1.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: schedules.constant(0, 1e-3), "total_steps"),
        (lambda: schedules.constant(-5, 1e-3), "total_steps"),
        (lambda: schedules.constant(10.5, 1e-3), "total_steps"),  # type: ignore[arg-type]
        (lambda: schedules.constant(True, 1e-3), "total_steps"),
        (lambda: schedules.constant(MAX_STEPS + 1, 1e-3), "total_steps"),
        (lambda: schedules.constant(10, math.nan), "peak_lr"),
        (lambda: schedules.constant(10, math.inf), "peak_lr"),
        (lambda: schedules.constant(10, 0.0), "peak_lr"),
        (lambda: schedules.constant(10, -1e-3), "peak_lr"),
        (lambda: schedules.constant(10, 1e-3, warmup_steps=11), "warmup_steps"),
        (lambda: schedules.constant(10, 1e-3, warmup_steps=-1), "warmup_steps"),
        (lambda: schedules.cosine(10, 1e-3, floor_lr=2e-3), "floor_lr"),
        (lambda: schedules.cosine(10, 1e-3, floor_lr=-1e-5), "floor_lr"),
        (lambda: schedules.cosine(10, 1e-3, floor_lr=math.nan), "floor_lr"),
        (lambda: schedules.wsd(10, 1e-3, decay_fraction=1.5), "decay_fraction"),
        (lambda: schedules.wsd(10, 1e-3, decay_fraction=-0.1), "decay_fraction"),
        (lambda: schedules.wsd(10, 1e-3, decay_fraction=math.nan), "decay_fraction"),
        (lambda: schedules.wsd(10, 1e-3), "decay_start"),
        (lambda: schedules.wsd(10, 1e-3, decay_start=5, decay_fraction=0.5), "decay_start"),
        (lambda: schedules.wsd(10, 1e-3, warmup_steps=4, decay_start=2), "decay_start"),
        (lambda: schedules.wsd(10, 1e-3, decay_start=11), "decay_start"),
        (lambda: schedules.wsd(10, 1e-3, decay_start=5, shape="step"), "shape"),  # type: ignore[arg-type]
        (lambda: schedules.wsd(10, 1e-3, decay_start=5, shape="exponential"), "floor_lr"),
        (lambda: schedules.two_stage(10, 1e-3, -1e-4, 5), "second_lr"),
        (lambda: schedules.two_stage(10, 1e-3, 1e-4, 12), "switch_step"),
        (lambda: build_schedule("triangle", total_steps=10, peak_lr=1e-3), "family"),
        (lambda: build_schedule("cosine", total_steps=10, peak=1e-3), "parameters"),
        (lambda: validate_lrs([1e-3, math.nan]), "lrs"),
        (lambda: validate_lrs([1e-3, math.inf]), "lrs"),
        (lambda: validate_lrs([1e-3, -1e-4]), "lrs"),
        (lambda: validate_lrs([]), "lrs"),
        (lambda: validate_lrs([[1e-3]]), "lrs"),
        (lambda: validate_lrs(["fast"]), "lrs"),
        (lambda: validate_lrs(np.full(MAX_STEPS + 1, 1e-3)), "lrs"),
    ],
)
def test_bad_input_names_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field
