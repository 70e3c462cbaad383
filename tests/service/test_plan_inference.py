"""PlanInference on a real server, against LAWS.md §11.5 with the published Sardana family."""

from __future__ import annotations

import math

import pytest

from clients import PlannerClient, PlannerClientError

FAMILY = "inference-sardana-2023"


def test_thirteen_billion_case(client: PlannerClient) -> None:
    target = 1.69 + 406.4 / 13e9**0.336 + 410.7 / 5.765e11**0.283
    result = client.plan_inference(FAMILY, 2e12, target_loss=target)
    assert result.plan.params == pytest.approx(6.969e9, rel=2e-4)
    assert result.plan.tokens == pytest.approx(1.248e12, rel=2e-4)
    assert result.plan.total_flops == pytest.approx(8.005e22, rel=2e-4)
    assert result.chinchilla.total_flops == pytest.approx(9.697e22, rel=2e-4)
    assert result.saving_flops == pytest.approx(1.69e22, abs=5e19)
    assert result.plan.cost == pytest.approx(result.plan.total_flops, rel=1e-12)
    assert result.binding == ["target_loss"] and result.solver == "gp/CLARABEL"
    assert result.law.form == "chinchilla"
    # Serving at a third of training's MFU prices inference 3x: a smaller model.
    pricey = client.plan_inference(FAMILY, 2e12, target_loss=target, inference_mfu=1 / 3)
    assert pricey.plan.params < result.plan.params
    assert pricey.plan.cost > pricey.plan.total_flops


def test_lifetime_budget_and_caps(client: PlannerClient) -> None:
    result = client.plan_inference(FAMILY, 2e12, lifetime_budget=8e22, max_params=5e9)
    assert result.plan.params == 5e9 and result.binding == ["lifetime_budget", "max_params"]
    assert result.plan.cost == pytest.approx(8e22, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"target_loss": 1.6}, "FAILED_PRECONDITION", "target_loss"),
        ({"target_loss": 2.0, "inference_mfu": 0.0}, "INVALID_ARGUMENT", "inference_mfu"),
        ({"target_loss": 2.0, "training_mfu": 1.5}, "INVALID_ARGUMENT", "training_mfu"),
        ({"target_loss": math.nan}, "INVALID_ARGUMENT", "target_loss"),
        ({"lifetime_budget": -1.0}, "INVALID_ARGUMENT", "lifetime_budget"),
        ({}, "INVALID_ARGUMENT", "goal"),
    ],
)
def test_refusals(client: PlannerClient, kwargs: dict[str, float], code: str, field: str) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.plan_inference(FAMILY, 2e12, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value
    assert [v.field for v in caught.value.violations] == [field] or (
        code == "FAILED_PRECONDITION" and field in caught.value.message
    )


def test_negative_inference_tokens(client: PlannerClient) -> None:
    with pytest.raises(PlannerClientError) as caught:
        client.plan_inference(FAMILY, -1.0, target_loss=2.0)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == ["inference_tokens"]
