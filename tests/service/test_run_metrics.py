"""Run.metrics through the service: AddRuns stores them as given, ListRuns returns them, and a
bad metric is INVALID_ARGUMENT naming it, with nothing stored."""

from __future__ import annotations

import hashlib
import math

import pytest

from clients import PlannerClient, PlannerClientError
from clients.results import Run

TASKS = {"mmlu_avg_test_bpb": 0.7501562439156164, "mmlu_avg_test_acc": 0.5126799915287485}


def _derived(*values: object) -> str:
    """The id the service derives for a row without run_id (server.validation, re-done)."""
    return "auto-" + hashlib.sha256(repr(values).encode()).hexdigest()[:16]


def test_metrics_round_trip(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    given = [
        Run("1B-10xC", 1.28e9, 4.1e9, 3.2, step=1000, metrics=TASKS),
        Run("1B-10xC", 1.28e9, 8.2e9, 3.1, step=2000, metrics={"piqa_val_acc": 0.625, "x": -0.0}),
        Run("1B-10xC", 1.28e9, 1.2e10, 3.0, step=3000),
        Run("", 1e8, 2e9, 3.1),
        Run("", 1e8, 2e9, 3.1, metrics={"b": 1.0, "a/b:c.d-e": 1e-300}),
    ]
    result = client.add_runs(family_name, given)
    assert (result.added, result.unchanged) == (5, 0)
    stored = list(client.list_runs(family_name))
    assert [r.metrics for r in stored] == [r.metrics for r in given]
    assert math.copysign(1.0, stored[1].metrics["x"]) == -1.0
    # A row without metrics keeps the id derived before metrics existed; one with them gets
    # another, from its metrics sorted by name.
    assert stored[3].run_id == _derived(1e8, 2e9, 3.1, None, None, None)
    assert stored[4].run_id == _derived(
        1e8, 2e9, 3.1, None, None, None, ("metrics", (("a/b:c.d-e", 1e-300), ("b", 1.0)))
    )
    # The same rows again (metrics in another order): unchanged, whatever the map's order.
    again = [*given[:4], Run("", 1e8, 2e9, 3.1, metrics={"a/b:c.d-e": 1e-300, "b": 1.0})]
    assert (
        client.add_runs(family_name, again).unchanged,
        len(list(client.list_runs(family_name))),
    ) == (5, 5)


def test_changed_metrics_are_refused(client: PlannerClient, family_name: str) -> None:
    client.create_family(family_name)
    client.add_runs(family_name, [Run("r", 1e8, 2e9, 3.1, step=10, metrics={"a": 0.5})])
    with pytest.raises(PlannerClientError) as caught:
        client.add_runs(family_name, [Run("r", 1e8, 2e9, 3.1, step=10, metrics={"a": 0.6})])
    assert caught.value.code == "ALREADY_EXISTS"
    assert [v.field for v in caught.value.violations] == ["runs[0].run_id"]


NAME_65 = "m" * 65
TOO_MANY = {f"m{i}": float(i) for i in range(65)}


@pytest.mark.parametrize(
    ("metrics", "field", "match"),
    [
        ({"mmlu acc": 0.5}, 'runs[3].metrics["mmlu acc"]', "not a metric name"),
        ({"": 0.5}, 'runs[3].metrics[""]', "not a metric name"),
        ({NAME_65: 0.5}, f'runs[3].metrics["{NAME_65}"]', "1-64 characters"),
        ({"acc\n": 0.5}, 'runs[3].metrics["acc\\n"]', "not a metric name"),
        ({"ok": 1.0, "acc": math.nan}, 'runs[3].metrics["acc"]', "NaN"),
        ({"acc": math.inf}, 'runs[3].metrics["acc"]', "finite"),
        ({"acc": -math.inf}, 'runs[3].metrics["acc"]', "finite"),
        (TOO_MANY, "runs[3].metrics", "at most 64"),
    ],
)
def test_bad_metrics_name_the_field(
    client: PlannerClient, family_name: str, metrics: dict[str, float], field: str, match: str
) -> None:
    client.create_family(family_name)
    good = [Run(f"ok-{i}", 1e8, 2e9, 3.1, metrics={"acc": 0.5}) for i in range(3)]
    with pytest.raises(PlannerClientError) as caught:
        client.add_runs(family_name, [*good, Run("bad", 1e8, 2e9, 3.1, metrics=metrics)])
    assert caught.value.code == "INVALID_ARGUMENT", caught.value
    assert [v.field for v in caught.value.violations] == [field]
    assert match in caught.value.message, caught.value.message
    assert list(client.list_runs(family_name)) == []


def test_sixty_four_metrics_of_sixty_four_characters_are_accepted(
    client: PlannerClient, family_name: str
) -> None:
    metrics = {f"{i:02d}" + "x" * 62: i / 7 for i in range(64)}
    client.create_family(family_name)
    client.add_runs(family_name, [Run("wide", 1e8, 2e9, 3.1, metrics=metrics)])
    (stored,) = client.list_runs(family_name)
    assert stored.metrics == metrics
