"""`planner overtrain|datamix|sparsity|allocate` end to end, --json per DESIGN.md §5."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from clients.client import PlannerClient
from clients.results import Hardware, LawInfo
from tests.cli.test_cli import planner, planner_json
from tests.service.server_process import ServerProcess


def test_overtrain_json_and_text(server: ServerProcess) -> None:
    args = ["overtrain", "overtraining-gadre-2024-c4", "--compute", "1e22", "--multiplier", "100"]
    out = planner_json(server, *args)
    assert out["params"] == pytest.approx(math.sqrt(1e22 / 600), rel=1e-12)
    assert out["tokens"] == pytest.approx(100 * out["params"], rel=1e-12)
    e, a, b, eta = 1.5083, 141.2772, 189.5155, 0.12124
    assert out["loss"] == pytest.approx(e + (a * 100**eta + b * 100**-eta) * 1e22**-eta)
    assert out["best_multiplier"] == pytest.approx((b / a) ** (1 / (2 * eta)), rel=1e-12)
    assert 0 < out["downstream_error"] < 1
    text = planner(server, *args)
    assert text.returncode == 0 and "fitted range" in text.stdout
    bad = planner(server, "overtrain", "overtraining-gadre-2024-c4", "--target-loss", "1.2")
    assert bad.returncode == 1 and "irreducible" in bad.stderr and "Traceback" not in bad.stderr


def test_datamix_json_has_the_contract_keys(server: ServerProcess, tmp_path: Path) -> None:
    pools = tmp_path / "pools.json"
    pools.write_text(
        json.dumps(
            {
                "a": 1.0,
                "d": 0.1,
                "pools": [
                    {"name": "top", "size": 1e6, "utility": -0.3, "half_life": 1.0},
                    {"name": "rest", "size": 5e7, "utility": -0.15, "half_life": 6.0},
                ],
            }
        )
    )
    out = planner_json(server, "datamix", "--pools", str(pools), "--compute", "5e5")
    assert set(out) == {"pools", "predicted_error", "candidates", "solver"}
    assert out["pools"] == [{"name": "top", "samples": 5e5, "epochs": 0.5}]
    assert [c["pools"] for c in out["candidates"]] == [["top"], ["top", "rest"]]
    assert out["predicted_error"] == min(c["predicted_error"] for c in out["candidates"])
    text = planner(
        server, "datamix", "--pools", str(pools), "--compute", "5e5", "--compare-at", "1e9"
    )
    assert text.returncode == 0 and "train on: top" in text.stdout and "ERR @" in text.stdout
    picture = tmp_path / "mix.png"
    drawn = planner_json(
        server, "datamix", "--pools", str(pools), "--compute", "5e5", "--plot", str(picture)
    )
    assert drawn["plot"] == str(picture) and drawn["pools"] == out["pools"]
    image = picture.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000
    pools.write_text('{"pools": [{"name": "x", "size": "big", "utility": -0.1, "half_life": 1}]}')
    bad = planner(server, "datamix", "--pools", str(pools), "--compute", "1e6")
    assert bad.returncode == 2 and "pools[0].size" in bad.stderr
    pools.write_text('{"pools": [{"name": "x", "size": 0, "utility": -0.1, "half_life": 1}]}')
    refused = planner(server, "datamix", "--pools", str(pools), "--compute", "1e6")
    assert refused.returncode == 1 and "pools[0].size" in refused.stderr


def test_sparsity_json_has_the_contract_keys(server: ServerProcess) -> None:
    args = ["sparsity", "chinchilla-epoch-2024", "--compute", "1e23", "--final-sparsity", "0.5"]
    out = planner_json(server, *args)
    contract = {"dense_params", "average_params", "final_params", "tokens", "loss", "schedule"}
    assert contract | {"dense_same_size"} <= set(out)
    assert out["average_params"] / out["dense_params"] == pytest.approx(0.6875, rel=1e-12)
    assert len(out["schedule"]) == 11 and out["schedule"][-1] == {"fraction": 1.0, "sparsity": 0.5}
    assert set(out["dense_same_size"]) == {"params", "tokens", "loss"}
    text = planner(server, *args)
    assert text.returncode == 0 and "dense same size" in text.stdout and "schedule" in text.stdout


def test_allocate_json_has_the_contract_keys(server: ServerProcess, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps(
            {
                "jobs": [
                    {"name": "big", "family": "chinchilla-epoch-2024", "weight": 2.0},
                    {
                        "name": "small",
                        "family": "inference-sardana-2023",
                        "weight": 1.0,
                        "max_flops": 1e22,
                    },
                ]
            }
        )
    )
    out = planner_json(server, "allocate", "--jobs", str(jobs), "--compute", "1e24")
    assert {"jobs", "marginal_value"} <= set(out)
    assert [j["name"] for j in out["jobs"]] == ["big", "small"]
    assert {"name", "flops", "params", "tokens", "loss"} <= set(out["jobs"][0])
    assert out["jobs"][1]["flops"] == pytest.approx(1e22) and out["jobs"][1]["binding"] == [
        "max_flops"
    ]
    assert sum(j["flops"] for j in out["jobs"]) == pytest.approx(1e24)
    text = planner(server, "allocate", "--jobs", str(jobs), "--compute", "1e24")
    assert text.returncode == 0 and "marginal value" in text.stdout and "SHARE" in text.stdout
    jobs.write_text('{"jobs": [{"name": "x", "family": "chinchilla-epoch-2024", "gpus": 8}]}')
    bad = planner(server, "allocate", "--jobs", str(jobs), "--compute", "1e24")
    assert bad.returncode == 2 and "unknown keys gpus" in bad.stderr


# -- plans on hardware -------------------------------------------------------------------------

# 512 H100 SXM (989 TFLOP/s dense BF16) at 40% MFU, $2.50 an accelerator-hour; serving on
# accelerators of 312 TFLOP/s at 25% MFU, $1.20 an hour.
GPUS, PEAK, MFU, PRICE = 512, 9.89e14, 0.4, 2.5
SERVE_PEAK, SERVE_MFU, SERVE_PRICE = 3.12e14, 0.25, 1.2
CLUSTER = [
    "--accelerators",
    str(GPUS),
    "--peak-flops",
    str(PEAK),
    "--mfu",
    str(MFU),
    "--price-per-hour",
    str(PRICE),
]
SERVING = [
    "--inference-peak-flops",
    str(SERVE_PEAK),
    "--inference-mfu",
    str(SERVE_MFU),
    "--inference-price-per-hour",
    str(SERVE_PRICE),
]
SARDANA = ["inference", "inference-sardana-2023", "--inference-tokens", "2e12"]


def step_law_lr(n: float, d: float) -> float:
    """Li et al. 2025's Step Law as published."""
    return 1.797 * n**-0.7129 * d**0.3075


def step_law_batch(d: float) -> float:
    return 0.5807 * d**0.5709


def kaplan_critical_batch(loss: float) -> float:
    """Kaplan et al. 2020, Table 5: B_crit(L) = 2.1e8 / L^(1/0.21) tokens."""
    return 2.1e8 / loss ** (1 / 0.21)


def hours_on(flops: float, accelerators: int = GPUS) -> float:
    return flops / (accelerators * PEAK * MFU) / 3600


def test_optimal_on_hardware_json_and_text(server: ServerProcess) -> None:
    args = ["optimal", "chinchilla-hoffmann-2022", "--compute", "1e23", *CLUSTER]
    out = planner_json(server, *args)
    n, d, training = out["params"], out["tokens"], out["training"]
    assert out["flops"] == pytest.approx(6 * n * d, rel=1e-12)
    hours = hours_on(out["flops"])
    assert training["wall_clock_hours"] == pytest.approx(hours, rel=1e-12)
    assert training["accelerator_hours"] == pytest.approx(hours * GPUS, rel=1e-12)
    assert training["cost"] == pytest.approx(hours * GPUS * PRICE, rel=1e-12)
    assert training["learning_rate"] == pytest.approx(step_law_lr(n, d), rel=1e-9)
    assert training["batch_tokens"] == pytest.approx(step_law_batch(d), rel=1e-9)
    assert training["steps"] == math.ceil(d / step_law_batch(d))
    assert training["hyperparameter_law"] == {
        "form": "step_law",
        "version": 1,
        "method": "published",
    }
    check = training["critical_batch"]
    critical = kaplan_critical_batch(out["loss"])
    batch = training["batch_tokens"]
    assert check["loss"] == out["loss"]
    assert check["critical_batch_tokens"] == pytest.approx(critical, rel=1e-9)
    assert check["step_penalty"] == pytest.approx(1 + critical / batch, rel=1e-9)
    assert check["token_penalty"] == pytest.approx(1 + batch / critical, rel=1e-9)
    assert check["exceeds_critical"] is (batch > critical)

    text = planner(server, *args)
    assert text.returncode == 0, text.stderr
    block = text.stdout[text.stdout.index("\ntraining\n") :]
    assert f"{training['steps']:,}" in block
    assert f"cost               {hours * GPUS * PRICE:.2f}" in block
    assert f"wall-clock         {hours:.6g} hours" in block
    assert f"learning rate      {step_law_lr(n, d):.4g}" in block
    assert "step_law v1 (published)" in block and "indicative only" in block
    assert f"{1 + critical / batch:.3g}x the fewest steps" in block


def test_optimal_accelerator_hours_and_profile_share_flags(server: ServerProcess) -> None:
    """--peak-flops and --mfu size an accelerator-hour budget and set the profile at once."""
    args = ["optimal", "chinchilla-epoch-2024", "--accelerator-hours", "2e5"]
    out = planner_json(server, *args, *CLUSTER)
    assert out["flops"] == pytest.approx(2e5 * 3600 * PEAK * MFU, rel=1e-12)
    # 2e5 accelerator-hours on 512 accelerators.
    assert out["training"]["wall_clock_hours"] == pytest.approx(2e5 / GPUS, rel=1e-12)
    assert out["training"]["cost"] == pytest.approx(2e5 * PRICE, rel=1e-12)
    # Without --accelerators the same flags size the budget only: no training block.
    budget_only = planner_json(server, *args, "--peak-flops", str(PEAK), "--mfu", str(MFU))
    assert "training" not in budget_only
    assert budget_only["flops"] == out["flops"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--peak-flops", "9.89e14", "--mfu", "0.4"], "add --accelerators N"),
        (["--accelerators", "8"], "--accelerators needs --peak-flops and --mfu"),
        (["--price-per-hour", "2"], "--price-per-hour: the hardware profile needs"),
        (["--batch-tokens", "1e6"], "--batch-tokens: the hardware profile needs"),
        (["--hyperparameter-law", "step-law-2025:x"], "expected FAMILY or FAMILY:VERSION"),
    ],
)
def test_hardware_flags_that_make_no_profile_are_usage_errors(
    server: ServerProcess, flags: list[str], message: str
) -> None:
    result = planner(server, "optimal", "chinchilla-hoffmann-2022", "--compute", "1e23", *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "field", "reason"),
    [
        ("--mfu", "1.5", "hardware.mfu", "must be in (0, 1]"),
        ("--accelerators", "0", "hardware.accelerators", ""),
        ("--price-per-hour", "-1", "hardware.price_per_accelerator_hour", ""),
        ("--batch-tokens", "0", "hardware.batch_tokens", ""),
    ],
)
def test_bad_hardware_values_show_the_servers_field(
    server: ServerProcess, flag: str, value: str, field: str, reason: str
) -> None:
    flags = dict(zip(CLUSTER[::2], CLUSTER[1::2], strict=True)) | {flag: value}
    args = ["optimal", "chinchilla-hoffmann-2022", "--compute", "1e23"]
    args += [word for pair in flags.items() for word in pair]
    text = planner(server, *args)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert f"planner: error: INVALID_ARGUMENT: {field}: {reason}" in text.stderr
    answer = planner(server, "--json", *args)
    error = json.loads(answer.stdout)["error"]
    assert answer.returncode == 1 and error["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["field_violations"]] == [field]


def test_hyperparameter_law_names_a_step_law(server: ServerProcess) -> None:
    base = ["optimal", "chinchilla-hoffmann-2022", "--compute", "1e23", *CLUSTER]
    named = planner_json(server, *base, "--hyperparameter-law", "step-law-2025:1")
    assert named["training"] == planner_json(server, *base)["training"]
    missing = planner(server, *base, "--hyperparameter-law", "chinchilla-epoch-2024")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    assert "step_law" in missing.stderr


def test_inference_priced_in_money(server: ServerProcess) -> None:
    args = [*SARDANA, "--target-loss", "2.045", *CLUSTER, *SERVING]
    out = planner_json(server, *args)

    def money(plan: dict[str, float]) -> float:
        """Accelerator-hours of each phase at its price, by hand."""
        training = plan["training_flops"] / (PEAK * MFU) / 3600 * PRICE
        serving = plan["inference_flops"] / (SERVE_PEAK * SERVE_MFU) / 3600 * SERVE_PRICE
        return training + serving

    # The CLI's JSON holds the inference-aware plan's fields at the top level.
    assert out["cost"] == pytest.approx(money(out), rel=1e-9)
    assert out["chinchilla"]["cost"] == pytest.approx(money(out["chinchilla"]), rel=1e-9)
    assert out["saving_cost"] == pytest.approx(money(out["chinchilla"]) - money(out), rel=1e-6)
    hours = hours_on(out["training_flops"])
    assert out["training"]["cost"] == pytest.approx(hours * GPUS * PRICE, rel=1e-9)
    assert out["training"]["learning_rate"] == pytest.approx(
        step_law_lr(out["params"], out["tokens"]), rel=1e-9
    )
    text = planner(server, *args)
    assert text.returncode == 0, text.stderr
    assert f"in money: saves {out['saving_cost']:.2f} of {money(out['chinchilla']):.2f}" in (
        text.stdout
    )
    assert "\ntraining\n" in text.stdout and "indicative only" in text.stdout

    # Cost is money: the FLOP weights and MFUs are refused, by name.
    weighted = planner(server, *args, "--training-mfu", "0.5")
    assert weighted.returncode == 1
    assert "INVALID_ARGUMENT: training_mfu: must not be set" in weighted.stderr
    unpriced = [word for word in args if word not in ("--price-per-hour", str(PRICE))]
    refused = planner(server, *unpriced)
    assert refused.returncode == 1
    assert "hardware.price_per_accelerator_hour: must be > 0" in refused.stderr
    partial = planner(server, *SARDANA, "--target-loss", "2.045", "--inference-peak-flops", "3e14")
    assert partial.returncode == 2 and "the serving cluster needs" in partial.stderr


def test_inference_mfu_without_a_serving_cluster_still_weights_cost(
    server: ServerProcess,
) -> None:
    args = [*SARDANA, "--target-loss", "2.045", "--inference-mfu", "0.5"]
    out = planner_json(server, *args, *CLUSTER)
    # Weights 1, training MFU 1: cost = training FLOPs + inference FLOPs / 0.5.
    assert out["cost"] == pytest.approx(out["training_flops"] + out["inference_flops"] / 0.5)
    assert out["training"]["wall_clock_hours"] == pytest.approx(
        hours_on(out["training_flops"]), rel=1e-9
    )
    assert {k: v for k, v in out.items() if k != "training"} == planner_json(server, *args)


def test_overtrain_shows_a_training_block(server: ServerProcess) -> None:
    args = [
        "overtrain",
        "overtraining-gadre-2024-redpajama",
        "--compute",
        "1e22",
        "--multiplier",
        "80",
        "--accelerators",
        "256",
        "--peak-flops",
        str(PEAK),
        "--mfu",
        str(MFU),
        "--batch-tokens",
        "4e6",
        "--hyperparameter-law",
        "step-law-2025",
    ]
    out = planner_json(server, *args)
    n, d, training = out["params"], out["tokens"], out["training"]
    assert training["learning_rate"] == pytest.approx(step_law_lr(n, d), rel=1e-9)
    # The profile's batch replaces the Step Law's.
    assert training["batch_tokens"] == 4e6 and training["steps"] == math.ceil(d / 4e6)
    assert training["wall_clock_hours"] == pytest.approx(hours_on(1e22, 256), rel=1e-9)
    assert training["cost"] is None  # no price given
    critical = kaplan_critical_batch(out["loss"])
    assert training["critical_batch"]["exceeds_critical"] is (4e6 > critical)
    text = planner(server, *args)
    assert text.returncode == 0, text.stderr
    block = text.stdout[text.stdout.index("\ntraining\n") :]
    assert f"{math.ceil(d / 4e6):,}" in block and "cost" not in block
    assert "indicative only" in block


def test_sparsity_trains_its_dense_start(server: ServerProcess) -> None:
    args = ["sparsity", "chinchilla-epoch-2024", "--compute", "1e23", "--final-params", "5e9"]
    out = planner_json(server, *args, *CLUSTER)
    training = out["training"]
    # Learning rate and batch of the dense start; time counts the plan's FLOPs.
    dense, d = out["dense_params"], out["tokens"]
    assert training["learning_rate"] == pytest.approx(step_law_lr(dense, d), rel=1e-9)
    assert training["batch_tokens"] == pytest.approx(step_law_batch(d), rel=1e-9)
    assert training["wall_clock_hours"] == pytest.approx(hours_on(out["flops"]), rel=1e-9)
    assert training["cost"] == pytest.approx(hours_on(out["flops"]) * GPUS * PRICE, rel=1e-9)
    text = planner(server, *args, *CLUSTER)
    assert text.returncode == 0 and "\ntraining\n" in text.stdout
    assert f"{training['steps']:,}" in text.stdout


def test_client_plan_methods_take_hardware(server: ServerProcess) -> None:
    with PlannerClient(server.target, timeout=30) as client:
        plan = client.plan_compute_optimal(
            "chinchilla-hoffmann-2022",
            compute=1e23,
            hardware=Hardware(GPUS, PEAK, MFU),
            hyperparameter_law="step-law-2025",
        )
        plain = client.plan_compute_optimal("chinchilla-hoffmann-2022", compute=1e23)
    assert plain.training is None
    training = plan.training
    assert training is not None and training.cost is None
    assert training.hyperparameter_law == LawInfo("step_law", 1, "published")
    assert training.wall_clock_hours == pytest.approx(hours_on(1e23), rel=1e-12)
    assert training.learning_rate == pytest.approx(step_law_lr(plan.params, plan.tokens))
    assert training.critical_batch is not None
    assert training.critical_batch.critical_batch_tokens == pytest.approx(
        kaplan_critical_batch(plan.loss), rel=1e-9
    )
