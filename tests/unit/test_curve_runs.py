"""planner.curves.runs: stored checkpoints grouped into curves, each run's schedule given or
interpolated (from lr 0 at step 0), and the errors naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from planner.curves.runs import Checkpoint, run_curves
from planner.errors import Infeasible, InvalidInput


def rows(run_id: str, points: list[tuple[int, float, float]]) -> list[Checkpoint]:
    return [Checkpoint(run_id, step, lr, loss) for step, lr, loss in points]


def test_interpolation_starts_from_zero_at_step_zero() -> None:
    # Warm-up to 1.0 at step 4, then a linear decay to 0.5 at step 8 (rows out of order).
    built = run_curves(rows("a", [(8, 0.5, 2.9), (4, 1.0, 3.2)]), {})
    (curve,) = built.curves
    expected = [0.0, 0.25, 0.5, 0.75, 1.0, 0.875, 0.75, 0.625, 0.5]
    np.testing.assert_allclose(curve.lrs, expected, rtol=0, atol=1e-15)
    assert curve.steps.tolist() == [4, 8] and curve.loss.tolist() == [3.2, 2.9]
    assert (curve.name, built.interpolated, built.skipped) == ("a", ("a",), 0)


def test_a_checkpoint_at_step_zero_sets_the_start() -> None:
    built = run_curves(rows("a", [(0, 2.0, 9.0), (2, 1.0, 3.0)]), {})
    np.testing.assert_allclose(built.curves[0].lrs, [2.0, 1.5, 1.0])
    # A checkpoint before any training (lr 0 at step 0) is left out and counted.
    built = run_curves(rows("b", [(0, 0.0, 9.0), (2, 1.0, 3.0)]), {})
    assert built.curves[0].steps.tolist() == [2] and built.skipped == 1


def test_a_given_schedule_is_checked_at_every_checkpoint() -> None:
    data = rows("a", [(2, 1.0, 3.0), (5, 0.5, 2.8)]) + rows("b", [(3, 1.0, 3.1)])
    lrs = np.array([0.5, 1.0, 1.0, 1.0, 0.5, 0.5])
    built = run_curves(data, {"a": lrs})
    assert [c.name for c in built.curves] == ["a", "b"] and built.interpolated == ("b",)
    np.testing.assert_array_equal(built.curves[0].lrs, lrs)
    # Within 1e-6 relative is the same rate; beyond it is refused, naming the step.
    run_curves(data, {"a": lrs * (1 + 5e-7)})
    off = lrs.copy()
    off[5] = 0.5 * (1 + 2e-6)
    with pytest.raises(InvalidInput) as caught:
        run_curves(data, {"a": off})
    assert caught.value.field == "schedules[a]" and "at step 5" in caught.value.reason
    with pytest.raises(InvalidInput) as caught:
        run_curves(data, {"a": lrs[:5]})
    assert caught.value.field == "schedules[a]" and "checkpoint at step 5" in caught.value.reason
    with pytest.raises(InvalidInput) as caught:
        run_curves(data, {"c": lrs})
    assert caught.value.field == "schedules[c]"


@pytest.mark.parametrize(
    ("row", "missing"),
    [(Checkpoint("x", None, 1e-3, 3.0), "step"), (Checkpoint("x", 10, None, 3.0), "lr")],
)
def test_rows_without_step_or_lr_cannot_be_fitted(row: Checkpoint, missing: str) -> None:
    with pytest.raises(Infeasible) as caught:
        run_curves([*rows("a", [(4, 1.0, 3.0)]), row], {})
    assert f"1 rows of 1 runs lack {missing} (e.g. run 'x')" in caught.value.message
