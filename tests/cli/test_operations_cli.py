"""Operations from the client and the CLI (issue 10, item 1's client side): `planner fit` waits
on an operation, `--detach` leaves it running, Ctrl-C stops the wait and not the fit, and
`planner operations list|get|watch|cancel`; plus the client's batch queries, which agree with
the single calls. End to end against a real server."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients import PlannerClient
from clients.client import OperationFailed
from clients.results import ComputeOptimalBatch, ComputeOptimalPlan, Operation, Run
from tests.cli.test_cli import PLANNER, planner, planner_json
from tests.service.server_process import ServerProcess

E, A, B, ALPHA, BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658
FIT_KEYS = {"version", "form", "method", "current", "params", "intervals", "diagnostics"}
FIT_KEYS |= {"options", "auto"}
QUICK_FIT = ["--method", "vpnls", "--bootstrap", "20", "--seed", "2"]


def write_noisy_runs(path: Path, count: int) -> None:
    """Runs on the Epoch law with 1% noise (as tests/service/test_operations.py makes them):
    with 100 of them a Huber bootstrap of 1000 takes about a minute."""
    rng = np.random.default_rng(0)
    params = np.geomspace(5e7, 5e9, count)
    tokens = params * rng.uniform(5, 60, count)
    loss = (E + A / params**ALPHA + B / tokens**BETA) * (1 + 0.01 * rng.standard_normal(count))
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["run_id", "params", "tokens", "loss"])
        for i, row in enumerate(zip(params, tokens, loss, strict=True)):
            writer.writerow([f"r{i}", *(repr(float(v)) for v in row)])


def noisy_family(server: ServerProcess, folder: Path, name: str, count: int) -> str:
    path = folder / f"{name}.csv"
    write_noisy_runs(path, count)
    planner_json(server, "families", "create", name)
    planner_json(server, "runs", "add", name, str(path))
    return name


@pytest.fixture
def client(server: ServerProcess) -> Iterator[PlannerClient]:
    with PlannerClient(server.target) as planner_client:
        yield planner_client


def wait_until(client: PlannerClient, family: str, stage: str, timeout: float) -> Operation:
    """The family's newest operation, once its progress has reached `stage`."""
    deadline = time.monotonic() + timeout
    while True:
        operations = list(client.list_operations(family))
        if operations and operations[0].progress.stage == stage:
            return operations[0]
        assert time.monotonic() < deadline, operations
        time.sleep(0.1)


# -- fit, detached or waited for --------------------------------------------------------------


def test_detached_fit_is_shown_watched_and_listed(server: ServerProcess, tmp_path: Path) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-detach", 30)
    started = planner(server, "fit", family, *QUICK_FIT, "--detach")
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    assert name.startswith("operations/") and "\n" not in name
    assert f"planner operations watch {name}" in started.stderr

    shown = planner_json(server, "operations", "get", name)
    assert (shown["name"], shown["kind"], shown["family"]) == (name, "fit", family)
    assert shown["state"] in ("QUEUED", "RUNNING", "SUCCEEDED")

    watched = planner_json(server, "operations", "watch", name)
    assert set(watched) == FIT_KEYS and watched["current"]
    stored = planner_json(server, "laws", "show", family, "--version", str(watched["version"]))
    assert stored["params"] == watched["params"] and stored["ensemble_size"] == 20
    text = planner(server, "operations", "watch", name)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(
        f"{family}: chinchilla v{watched['version']} by vpnls on 30 runs, 20 bootstrap fits"
    )
    done = planner_json(server, "operations", "get", name)
    assert done["state"] == "SUCCEEDED" and done["law"]["version"] == watched["version"]

    # Waited for (no --detach): the law as `fit` always printed it, from a second operation.
    waited = planner_json(server, "fit", family, *QUICK_FIT)
    assert set(waited) == FIT_KEYS and waited["version"] == watched["version"] + 1
    assert waited["params"] == watched["params"]  # the same seed fits the same law
    listed = planner_json(server, "operations", "list", "--family", family)["operations"]
    assert [op["name"] for op in listed][1:] == [name]  # newest first
    assert [op["law"]["version"] for op in listed] == [waited["version"], watched["version"]]
    table = planner(server, "operations", "list", "--family", family)
    assert table.stdout.startswith("NAME") and name in table.stdout


def test_detached_fit_json_is_the_operation(server: ServerProcess, tmp_path: Path) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-detach-json", 20)
    operation = planner_json(server, "fit", family, *QUICK_FIT, "--detach")
    assert operation["kind"] == "fit" and operation["family"] == family
    assert not operation["done"] and operation["law"] is None
    watched = planner_json(server, "operations", "watch", operation["name"])
    assert watched["form"] == "chinchilla"


def test_a_fit_refused_at_once_starts_no_operation(
    server: ServerProcess, tmp_path: Path, client: PlannerClient
) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-refused", 3)
    refused = planner(server, "fit", family, "--method", "vpnls", "--bootstrap", "0", "--detach")
    assert refused.returncode == 1
    assert "planner: error: FAILED_PRECONDITION" in refused.stderr
    assert list(client.list_operations(family)) == []


def test_a_failed_operation_is_an_error_when_waited_for_and_data_when_got(
    server: ServerProcess, tmp_path: Path, client: PlannerClient
) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-failed", 20)
    revision = client.get_family(family).revision
    started = client.start_fit(family, "vpnls", bootstrap=200, expected_revision=revision)
    client.add_runs(family, [Run("late", 1e9, 2e10, 2.5)])  # the store then refuses the law
    with pytest.raises(OperationFailed) as raised:
        client.watch_operation(started.name)
    assert raised.value.code == "ABORTED" and raised.value.operation.state == "FAILED"
    shown = planner_json(server, "operations", "get", started.name)
    assert shown["state"] == "FAILED" and shown["error"]["code"] == "ABORTED"
    assert client.get_operation(started.name).error == raised.value.operation.error
    watched = planner(server, "operations", "watch", started.name)
    assert watched.returncode == 1 and "planner: error: ABORTED" in watched.stderr


def test_interrupting_fit_leaves_it_running_until_cancelled(
    server: ServerProcess, tmp_path: Path, client: PlannerClient
) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-cancel", 100)
    slow = ["fit", family, "--method", "huber", "--bootstrap", "1000", "--seed", "1"]
    with subprocess.Popen(
        [str(PLANNER), "--target", server.target, *slow],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            running = wait_until(client, family, "bootstrap", 60)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=15)
        finally:
            process.kill()
    name = running.name
    assert process.returncode == 130, stderr
    assert f"{name} keeps running" in stderr
    assert f"planner operations watch {name}" in stderr
    assert f"planner operations cancel {name}" in stderr
    assert not planner_json(server, "operations", "get", name)["done"]

    cancelled = planner_json(server, "operations", "cancel", name)
    assert cancelled["state"] == "CANCELLED" and cancelled["done"]
    assert cancelled["error"]["code"] == "CANCELLED"
    watched = planner(server, "operations", "watch", name)
    assert watched.returncode == 1 and "CANCELLED" in watched.stderr
    assert planner_json(server, "laws", "versions", family)["laws"] == []


def test_detached_backtest_gives_the_synchronous_report(
    server: ServerProcess, tmp_path: Path
) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-backtest", 30)
    args = ["backtest", family, "--train-below", "3e20", "--method", "vpnls"]
    synchronous = planner_json(server, *args)
    operation = planner_json(server, *args, "--detach")
    assert operation["kind"] == "backtest"
    watched = planner_json(server, "operations", "watch", operation["name"])
    assert watched == synchronous and watched["test_runs"] > 0


def test_operations_commands_refuse_bad_names(server: ServerProcess) -> None:
    bad = planner(server, "--json", "operations", "get", "operations/nope")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "INVALID_ARGUMENT"
    missing = planner(server, "operations", "watch", "operations/" + "0" * 32)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    isoflop = planner(server, "fit", "cli-any", "--method", "isoflop", "--detach")
    assert isoflop.returncode == 2 and "--detach" in isoflop.stderr


# -- batch queries through the client ---------------------------------------------------------


def assert_rows_agree(batch: ComputeOptimalBatch, singles: list[ComputeOptimalPlan]) -> None:
    assert len(batch) == len(singles) and batch.law.form == "chinchilla"
    for row, single in enumerate(singles):
        got = (batch.params[row], batch.tokens[row], batch.loss[row], batch.flops[row])
        expected = (single.params, single.tokens, single.loss, single.flops)
        assert got == pytest.approx(expected, rel=1e-9)
        assert (batch.binding[row], batch.solver[row]) == (single.binding, single.solver)


def test_plan_batch_agrees_with_single_plans(client: PlannerClient) -> None:
    family, cap = "chinchilla-epoch-2024", 1e11
    budgets, losses = [1e20, 5.76e23, 1e25], [2.3, 2.0, 1.9]
    by_budget = client.plan_compute_optimal_batch(family, budgets=budgets, max_params=cap)
    assert_rows_agree(
        by_budget, [client.plan_compute_optimal(family, b, max_params=cap) for b in budgets]
    )
    assert any("max_params" in tags for tags in by_budget.binding)  # the cap binds somewhere
    by_loss = client.plan_compute_optimal_batch(family, target_losses=losses, max_params=cap)
    assert_rows_agree(
        by_loss,
        [client.plan_compute_optimal(family, target_loss=t, max_params=cap) for t in losses],
    )


def test_predict_batch_agrees_with_single_predictions(
    server: ServerProcess, tmp_path: Path, client: PlannerClient
) -> None:
    family = noisy_family(server, tmp_path, "cli-ops-predict", 20)
    client.fit_law(family, "vpnls", bootstrap=20, seed=3)
    params, tokens = [1e8, 1e9, 7e10], [2e9, 2e10, 1.4e12]
    batch = client.predict_batch(family, params, tokens, with_band=True)
    assert batch.low is not None and batch.high is not None and len(batch) == 3
    for row in range(3):
        single = client.predict(family, params[row], tokens[row])
        assert single.interval is not None
        assert batch.loss[row] == pytest.approx(single.loss, rel=1e-12)
        band = (batch.low[row], batch.high[row])
        assert band == pytest.approx(single.interval, rel=1e-9)
    plain = client.predict_batch(family, params, tokens)
    assert plain.low is None and np.array_equal(plain.loss, batch.loss)


def test_a_batch_answer_beyond_grpcs_default_4_mib_is_received(client: PlannerClient) -> None:
    count = 600_000  # 4.8 MB of losses
    params = np.geomspace(1e8, 1e11, count)
    batch = client.predict_batch("chinchilla-epoch-2024", params, 20 * params)
    assert len(batch) == count
    ends = [client.predict("chinchilla-epoch-2024", params[i], 20 * params[i]) for i in (0, -1)]
    assert [batch.loss[0], batch.loss[-1]] == pytest.approx([p.loss for p in ends], rel=1e-12)
