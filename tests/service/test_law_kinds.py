"""Laws of the three kinds (final loss, loss curve, hyperparameters) side by side in one family:
each query finds only the kind it can use, and says which forms it needs when given another."""

from __future__ import annotations

import pytest

from clients import PlannerClient, PlannerClientError

# Luo et al. 2025's fitted 25M parameters (shared data README).
MPL_25M = {
    "L0": 3.040,
    "A": 0.525,
    "alpha": 0.508,
    "B": 363.788,
    "C": 2.066,
    "beta": 0.583,
    "gamma": 0.641,
}
CHINCHILLA = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def test_a_curve_law_is_stored_and_read_back(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.put_law(family_name, "multi_power", MPL_25M, citation="Luo et al. 2025")
    law = client.get_law(family_name)  # no form: the family's only law, whatever its kind
    assert law.form == "multi_power"
    assert law.parameters == pytest.approx(MPL_25M)


def test_final_loss_queries_refuse_a_curve_law(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.put_law(family_name, "multi_power", MPL_25M)
    with pytest.raises(PlannerClientError) as named:
        client.predict(family_name, 1e9, 2e10, form="multi_power")
    assert named.value.code == "FAILED_PRECONDITION"
    assert "'chinchilla'" in named.value.message and "'multi_power'" in named.value.message
    # Without a form, a final-loss query looks only among final-loss forms: there is none.
    with pytest.raises(PlannerClientError) as unnamed:
        client.predict(family_name, 1e9, 2e10)
    assert unnamed.value.code == "NOT_FOUND"


def test_a_family_keeps_its_final_loss_default_beside_a_curve_law(
    client: PlannerClient, family_name: str
) -> None:
    client.create_family(family_name)
    client.put_law(family_name, "multi_power", MPL_25M)
    client.put_law(family_name, "chinchilla", CHINCHILLA)
    n, d = 1e9, 2e10
    expected = (
        CHINCHILLA["E"] + CHINCHILLA["A"] / n ** CHINCHILLA["alpha"]
        + CHINCHILLA["B"] / d ** CHINCHILLA["beta"]
    )  # fmt: skip
    assert client.predict(family_name, n, d).loss == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("form", "parameters", "field"),
    [
        ("multi_power", {**MPL_25M, "beta": -0.5}, "parameters.beta"),
        ("multi_power", {k: v for k, v in MPL_25M.items() if k != "gamma"}, "parameters.gamma"),
        ("lr_annealing", {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 2.0, "decay": 1.5}, "decay"),
        ("step_law", {"lr_coefficient": 1.8}, "parameters.lr_params_exponent"),
    ],
)
def test_bad_parameters_of_the_new_forms_name_the_field(
    client: PlannerClient, family_name: str, form: str, parameters: dict[str, float], field: str
) -> None:
    client.create_family(family_name)
    with pytest.raises(PlannerClientError) as caught:
        client.put_law(family_name, form, parameters)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert field in caught.value.message
