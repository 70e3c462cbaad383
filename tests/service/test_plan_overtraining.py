"""PlanOvertraining on a real server with the published Gadre fits (LAWS.md §3.2, §11.6)."""

from __future__ import annotations

import math

import pytest

from clients import PlannerClient, PlannerClientError

REDPAJAMA = "overtraining-gadre-2024-redpajama"
# LAWS.md §11.6 and the 46-task error link of §3.2.
E, A, B, ETA = 1.8366, 212.2361, 366.6872, 0.13643
EPSILON, K, GAMMA = 0.7608, 1.3229, 0.8907


def test_loss_at_compute_and_multiplier(client: PlannerClient) -> None:
    plan = client.plan_overtraining(REDPAJAMA, compute=1e22, multiplier=320.0)
    assert plan.params == pytest.approx(math.sqrt(1e22 / (6 * 320)), rel=1e-12)
    expected = E + (A * 320**ETA + B * 320**-ETA) * 1e22**-ETA
    assert plan.loss == pytest.approx(expected, rel=1e-12)
    assert plan.downstream_error == pytest.approx(
        EPSILON - K * math.exp(-GAMMA * expected), rel=1e-12
    )
    assert plan.best_multiplier == pytest.approx(7.42, abs=5e-3)
    assert plan.loss_penalty > 1 and plan.compute_ratio > 1
    assert plan.law.form == "overtraining"


def test_compute_for_an_error_target_at_the_best_multiplier(client: PlannerClient) -> None:
    plan = client.plan_overtraining(REDPAJAMA, target_error=0.6)
    loss = -math.log((EPSILON - 0.6) / K) / GAMMA
    m = (B / A) ** (1 / (2 * ETA))
    assert plan.multiplier == pytest.approx(m, rel=1e-12)
    assert plan.flops == pytest.approx(((A * m**ETA + B * m**-ETA) / (loss - E)) ** (1 / ETA))
    assert plan.loss == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize(
    ("family", "kwargs", "code", "where"),
    [
        (REDPAJAMA, {"target_loss": 1.8}, "FAILED_PRECONDITION", "target_loss"),
        (REDPAJAMA, {"target_error": 0.9}, "FAILED_PRECONDITION", "target_error"),
        (REDPAJAMA, {"target_error": 0.45}, "FAILED_PRECONDITION", "target_error"),
        (REDPAJAMA, {"compute": 1e21, "multiplier": 1e300}, "FAILED_PRECONDITION", "multiplier"),
        (REDPAJAMA, {"compute": 1e21, "multiplier": -2.0}, "INVALID_ARGUMENT", "multiplier"),
        (REDPAJAMA, {"compute": math.inf}, "INVALID_ARGUMENT", "budget.flops"),
        (REDPAJAMA, {}, "INVALID_ARGUMENT", "goal"),
        ("chinchilla-epoch-2024", {"compute": 1e21}, "NOT_FOUND", "law.form"),
    ],
)
def test_refusals(
    client: PlannerClient, family: str, kwargs: dict[str, float], code: str, where: str
) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.plan_overtraining(family, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value
    assert [v.field for v in caught.value.violations] == [where], caught.value
