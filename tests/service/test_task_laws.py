"""Task laws on a real server, reproducing the OLMo ladder paper (Bhagia et al. 2024) from
examples/olmo_tasks.csv: the 16 training runs of the ladder, every checkpoint, with six tasks'
loss (bits per byte) and accuracy as run metrics.

Published figures are tests/unit/test_task_laws.py's (the authors' released chained_main.csv
and variance.csv); the 7B-4T observations are the anneal row of shared/data/olmo_ladder. The
example keeps 6 significant digits of each metric, which moves the predictions by under 1e-4.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from clients import PlannerClientError
from planner.fitting.task_jobs import run_resamples
from planner.tasks import TASKS, RunCheckpoints, fit_task_scaling_law, noisy_tasks
from planner.tasks.spread import CheckpointSpread
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as pb_grpc
from tests.service.server_process import ServerProcess
from tests.unit import olmo_ladder_data as data
from tests.unit.test_task_laws import CHAINED_13B, TARGET_7B, TARGET_13B, VARIANCE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "olmo_tasks.csv"
FAMILY = "t-olmo-ladder-tasks"
# The example's tasks (planner.tasks names) and chance accuracies (the authors' task_minimum).
TASK_NAMES = (
    "mmlu_avg_test",
    "hellaswag_val",
    "piqa_val",
    "socialiqa_val",
    "arc_easy_test",
    "arc_challenge_test",
)
WITHIN_2_POINTS = ("mmlu_avg_test", "hellaswag_val", "piqa_val", "socialiqa_val")
MISSED = ("arc_easy_test", "arc_challenge_test")


def read_example() -> list[dict[str, str]]:
    with EXAMPLE.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_rows(rows: list[dict[str, str]]) -> list[pb.Run]:
    """The CSV as AddRuns rows: metric:<name> columns become Run.metrics."""
    runs = []
    for row in rows:
        metrics = {
            k[len("metric:") :]: float(v)
            for k, v in row.items()
            if k.startswith("metric:") and v != ""
        }
        runs.append(
            pb.Run(
                run_id=row["run_id"],
                step=int(row["step"]),
                params=float(row["params"]),
                tokens=float(row["tokens"]),
                loss=float(row["loss"]),
                metrics=metrics,
            )
        )
    return runs


def ladder_runs(rows: list[dict[str, str]], name: str) -> list[RunCheckpoints]:
    """The example's runs as the domain's RunCheckpoints, in file order (as the server sees)."""
    by_run: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    return [
        RunCheckpoints.of(
            float(rs[0]["params"]),
            [float(r["tokens"]) for r in rs],
            [float(r[f"metric:{name}_bpb"]) for r in rs],
            [float(r[f"metric:{name}_acc"]) for r in rs],
        )
        for rs in by_run.values()
    ]


def task_fit(name: str, /, bootstrap: int = 0, **task: Any) -> pb.FitLawRequest:
    options = pb.TaskFitOptions(
        name=name,
        loss_metric=f"{name}_bpb",
        accuracy_metric=f"{name}_acc",
        chance=TASKS[name].chance,
    )
    for field, value in task.items():
        setattr(options, field, value)
    return pb.FitLawRequest(family=FAMILY, form="task_link", bootstrap=bootstrap, task=options)


def fit(stub: pb_grpc.PlannerServiceStub, request: pb.FitLawRequest) -> pb.Law:
    events = list(stub.FitLaw(request, timeout=300))
    assert events[-1].HasField("law")
    return events[-1].law


def refused(call: Callable[[], Any], code: str, field: str | None, match: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = PlannerClientError.from_rpc_error(caught.value)
    assert error.code == code, error.message
    assert match in error.message, error.message
    if field is not None:
        assert [v.field for v in error.violations] == [field], error.violations


def predict(
    stub: pb_grpc.PlannerServiceStub, task: str, n: float, d: float, version: int = 0
) -> pb.PredictTaskResponse:
    law = pb.LawSelector(family=FAMILY, version=version)
    return stub.PredictTask(pb.PredictTaskRequest(law=law, task=task, params=n, tokens=d))


def chained(parameters: Any, n: float, d: float) -> tuple[float, float]:
    """Task loss and accuracy written out from a stored law's nine parameters."""
    p = parameters
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    return loss, p["a"] / (1 + math.exp(-p["k"] * (loss - p["x0"]))) + p["b"]


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.PlannerServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.PlannerServiceStub(channel)


@pytest.fixture(scope="module")
def laws(stub: pb_grpc.PlannerServiceStub) -> dict[str, pb.Law]:
    """The example loaded into a family and every task fitted without a bootstrap."""
    stub.CreateFamily(
        pb.CreateFamilyRequest(
            family=pb.Family(
                name=FAMILY, flops_per_param_token=6.0, metric="C4 validation loss, nats/token"
            )
        )
    )
    stub.AddRuns(pb.AddRunsRequest(family=FAMILY, runs=run_rows(read_example())))
    return {name: fit(stub, task_fit(name)) for name in TASK_NAMES}


def test_the_example_is_the_ladders_sixteen_runs() -> None:
    rows = read_example()
    assert len({row["run_id"] for row in rows}) == 16
    assert {f"metric:{t}_{kind}" for t in TASK_NAMES for kind in ("bpb", "acc")} <= set(rows[0])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_chained_13b_5t_matches_the_authors(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law], name: str
) -> None:
    """All six within 0.01 of the authors' chained prediction (they agree to ~1e-4: the
    example's rounding); the response is the stored parameters' chain, written out."""
    published, _ = CHAINED_13B[name]
    got = predict(stub, name, *TARGET_13B)
    assert abs(got.accuracy - published) < 0.01
    loss, accuracy = chained(laws[name].parameters, *TARGET_13B)
    assert (got.task_loss, got.accuracy) == pytest.approx((loss, accuracy), rel=1e-12)
    assert got.law.form == f"task_link:{name}" and got.law.version == laws[name].version
    assert got.floor == pytest.approx(laws[name].parameters["a"] + laws[name].parameters["b"])
    assert got.ceiling == laws[name].parameters["b"]
    assert not got.HasField("interval")  # no bootstrap, no band


@pytest.mark.parametrize("name", TASK_NAMES)
def test_chained_7b_4t_against_the_observed_anneal(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law], shared_data: Path, name: str
) -> None:
    """Within the paper's 2 points on MMLU, HellaSwag, PIQA and Social IQa; ARC-Easy and
    ARC-Challenge miss by more (8.0 and 10.4 points), as the paper reports for them."""
    observed = TASKS[name].accuracy(data.anneal_row(shared_data))
    error = abs(predict(stub, name, *TARGET_7B).accuracy - observed)
    relative = VARIANCE[name][4]  # the authors' 7B-4T relative error
    assert relative is not None
    assert error / observed == pytest.approx(relative, abs=1e-3)
    if name in WITHIN_2_POINTS:
        assert error < 0.02
    else:
        assert error > 0.02


def test_noisy_flags_follow_the_variance_table(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    """The above-mean rule over the six tasks' published CVs flags Social IQa, ARC-Easy and
    ARC-Challenge (loss CV mean 3.06e-3, accuracy CV mean 5.10e-3)."""
    published = {n: CheckpointSpread(10, *VARIANCE[n][:4]) for n in TASK_NAMES}
    expected = noisy_tasks(published)
    assert expected == {"socialiqa_val", "arc_easy_test", "arc_challenge_test"}
    flagged = {n for n in TASK_NAMES if predict(stub, n, *TARGET_13B).noisy}
    assert flagged == expected
    stored = float(laws["piqa_val"].options["spread_loss_cv"])
    assert stored == pytest.approx(VARIANCE["piqa_val"][1], rel=1e-3)


def test_bootstrap_band_pairs_both_steps(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    """A version with a bootstrap (stored, not current): its band is the 2.5-97.5 percentiles
    of the chained accuracy over refits of both steps on resampled runs, recomputed here."""
    request = _with(task_fit("mmlu_avg_test", bootstrap=6), seed=11, make_current=False)
    law = fit(stub, request)
    assert not law.current and law.ensemble_size + law.diagnostics.failed_resamples == 6
    assert set(law.intervals) == {"E", "A", "B", "alpha", "beta", "a", "b", "k", "x0"}
    runs = ladder_runs(read_example(), "mmlu_avg_test")
    accuracies = []
    for sample in run_resamples(len(runs), 6, seed=11):
        refit = fit_task_scaling_law([runs[i] for i in sample], chance=0.25)
        accuracies.append(refit.predict(*TARGET_13B).accuracy)
    low, high = np.percentile(accuracies, [2.5, 97.5])
    got = predict(stub, "mmlu_avg_test", *TARGET_13B, version=law.version)
    assert (got.interval.low, got.interval.high) == pytest.approx((low, high), rel=1e-9)
    assert predict(stub, "mmlu_avg_test", *TARGET_13B).law.version == laws["mmlu_avg_test"].version


def test_target_accuracy_plan_band_plans_each_row_on_its_own_chain(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    """With a bootstrap, a target-accuracy plan's intervals: each ensemble row (both steps
    refitted on one resample of runs, recomputed here) inverts its own link for the target and
    plans its own step 1 for that loss (Chinchilla's closed form, written out), then the 5th,
    50th and 95th percentiles over the rows."""
    # 12 rows: bands need at least 10 (planner.uncertainty.MIN_ROWS).
    law = fit(stub, _with(task_fit("piqa_val", bootstrap=12), seed=3, make_current=False))
    assert law.ensemble_size == 12
    target = pb.TaskTarget(task="piqa_val", accuracy=0.8)
    selector = pb.LawSelector(family=FAMILY, form="task_link:piqa_val", version=law.version)
    plan = stub.PlanComputeOptimal(
        pb.PlanComputeOptimalRequest(law=selector, target_accuracy=target)
    )
    runs = ladder_runs(read_example(), "piqa_val")
    flops = []
    for sample in run_resamples(len(runs), 12, seed=3):
        refit = fit_task_scaling_law([runs[i] for i in sample], chance=0.5)
        step1, link = refit.loss_law, refit.link
        if not link.a + link.b < 0.8 < link.b:
            continue  # this row's link never reaches 80%
        loss = link.x0 - math.log(link.a / (0.8 - link.b) - 1) / link.k
        e, a, b, alpha, beta = step1.E, step1.A, step1.B, step1.alpha, step1.beta
        if loss <= e:
            continue
        g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
        coefficient = a * g**-alpha + b * g**beta
        flops.append(6 * ((loss - e) / coefficient) ** (-(alpha + beta) / (alpha * beta)))
    assert len(flops) >= 10
    low, median, high = np.percentile(flops, [5, 50, 95])
    band = plan.intervals["flops"]
    assert (band.low, band.median, band.high) == pytest.approx((low, median, high), rel=1e-6)
    assert {"params", "tokens", "loss"} <= set(plan.intervals)


def _with(request: pb.FitLawRequest, **fields: Any) -> pb.FitLawRequest:
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def test_target_accuracy_plan_reaches_the_target(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    """Least compute for 60% on MMLU: the link's inverse, L = x0 - ln(a / (acc - b) - 1) / k,
    planned on the step-1 law; the chained accuracy at the plan's (N, D) is the target."""
    p = laws["mmlu_avg_test"].parameters
    target = pb.TaskTarget(task="mmlu_avg_test", accuracy=0.6)
    plan = stub.PlanComputeOptimal(
        pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY), target_accuracy=target)
    )
    loss = p["x0"] - math.log(p["a"] / (0.6 - p["b"]) - 1) / p["k"]
    assert plan.loss == pytest.approx(loss, rel=1e-12)
    _, accuracy = chained(p, plan.params, plan.tokens)
    assert accuracy == pytest.approx(0.6, abs=1e-9)
    assert plan.flops == pytest.approx(6 * plan.params * plan.tokens, rel=1e-12)
    assert plan.law.form == "task_link:mmlu_avg_test"
    # Least compute: the Chinchilla closed form, C = 6 ((L - E) / K)^(-(alpha + beta) / (alpha
    # beta)), K = A G^-alpha + B G^beta, G = (alpha A / (beta B))^(1 / (alpha + beta)).
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    coefficient = p["A"] * g ** -p["alpha"] + p["B"] * g ** p["beta"]
    exponent = -(p["alpha"] + p["beta"]) / (p["alpha"] * p["beta"])
    assert plan.flops == pytest.approx(6 * ((loss - p["E"]) / coefficient) ** exponent, rel=1e-9)
    # A cap on N binds and the target still holds, at more compute.
    capped = stub.PlanComputeOptimal(
        pb.PlanComputeOptimalRequest(
            law=pb.LawSelector(family=FAMILY), target_accuracy=target, max_params=plan.params / 2
        )
    )
    assert "max_params" in capped.binding and capped.flops > plan.flops
    assert chained(p, capped.params, capped.tokens)[1] == pytest.approx(0.6, abs=1e-6)


def test_target_accuracy_overtraining(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    p = laws["hellaswag_val"].parameters
    target = pb.TaskTarget(task="hellaswag_val", accuracy=0.8)
    law = pb.LawSelector(family=FAMILY)
    best = stub.PlanOvertraining(pb.PlanOvertrainingRequest(law=law, target_accuracy=target))
    over = stub.PlanOvertraining(
        pb.PlanOvertrainingRequest(law=law, target_accuracy=target, multiplier=400.0)
    )
    assert best.multiplier == best.best_multiplier
    assert (best.loss_penalty, best.compute_ratio) == pytest.approx((1.0, 1.0), abs=1e-9)
    assert over.tokens / over.params == pytest.approx(400.0, rel=1e-12)
    for plan in (best, over):
        assert chained(p, plan.params, plan.tokens)[1] == pytest.approx(0.8, abs=1e-9)
    assert over.compute_ratio == pytest.approx(over.flops / best.flops, rel=1e-12)
    assert over.compute_ratio > 1 and over.loss_penalty > 1
    assert over.best_multiplier == pytest.approx(best.best_multiplier, rel=1e-12)


def test_bad_task_queries(stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]) -> None:
    refused(
        lambda: predict(stub, "boolq_val", 1e9, 2e10),
        "FAILED_PRECONDITION",
        "task",
        f"no task law for task 'boolq_val' in family '{FAMILY}'",
    )
    refused(lambda: predict(stub, "mmlu_avg_test", 0.0, 2e10), "INVALID_ARGUMENT", "params", "")
    refused(lambda: predict(stub, "", 1e9, 2e10), "INVALID_ARGUMENT", "task", "required")
    p = laws["mmlu_avg_test"].parameters
    floor = p["a"] + p["b"]

    def plan(accuracy: float) -> Any:
        target = pb.TaskTarget(task="mmlu_avg_test", accuracy=accuracy)
        return stub.PlanComputeOptimal(
            pb.PlanComputeOptimalRequest(law=pb.LawSelector(family=FAMILY), target_accuracy=target)
        )

    refused(
        lambda: plan(floor - 0.01),
        "FAILED_PRECONDITION",
        "target_accuracy.accuracy",
        f"outside the mmlu_avg_test link's range ({floor:.4g}, {p['b']:.4g})",
    )
    refused(lambda: plan(1.5), "INVALID_ARGUMENT", "target_accuracy.accuracy", "(0, 1)")
    wrong = pb.PredictRequest(
        law=pb.LawSelector(family=FAMILY, form="task_link:piqa_val"), params=1e9, tokens=2e10
    )
    refused(lambda: stub.Predict(wrong), "FAILED_PRECONDITION", None, "task_link:piqa_val")


@pytest.mark.parametrize(
    ("task", "field", "match"),
    [
        ({"chance": 1.5}, "task.chance", "[0, 1)"),
        ({"skip_fraction": 1.0}, "task.skip_fraction", "[0, 1)"),
        ({"window": 0}, "task.window", "1 to 100"),
        ({"name": "MMLU"}, "task.name", "[a-z0-9_.-]"),
        ({"loss_metric": ""}, "task.loss_metric", "run metric"),
        ({"accuracy_metric": "piqa_val_bpb"}, "task.accuracy_metric", "differ"),
    ],
)
def test_bad_task_fit_options(
    stub: pb_grpc.PlannerServiceStub,
    laws: dict[str, pb.Law],
    task: dict[str, Any],
    field: str,
    match: str,
) -> None:
    request = task_fit("piqa_val", **task)
    refused(lambda: list(stub.FitLaw(request)), "INVALID_ARGUMENT", field, match)


def test_task_fit_needs_the_metrics(
    stub: pb_grpc.PlannerServiceStub, laws: dict[str, pb.Law]
) -> None:
    request = task_fit("piqa_val", loss_metric="boolq_val_bpb")
    refused(
        lambda: list(stub.FitLaw(request)),
        "FAILED_PRECONDITION",
        "task.loss_metric",
        "'boolq_val_bpb'",
    )
    bare = pb.FitLawRequest(family=FAMILY, form="task_link", bootstrap=0)
    refused(lambda: list(stub.FitLaw(bare)), "INVALID_ARGUMENT", "task", "required")
    misplaced = _with(task_fit("piqa_val"), form="chinchilla")
    refused(lambda: list(stub.FitLaw(misplaced)), "INVALID_ARGUMENT", "task", "task_link")
