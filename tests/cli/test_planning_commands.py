"""`planner overtrain|datamix|sparsity|allocate` end to end, --json per DESIGN.md §5."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

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
