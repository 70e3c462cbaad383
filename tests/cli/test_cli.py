"""The `planner` CLI end to end: a subprocess against a real server, --json per DESIGN.md §5."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service.server_process import ServerProcess

PLANNER = Path(sys.executable).parent / "planner"


def planner(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLANNER), "--target", server.target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def planner_json(server: ServerProcess, *args: str) -> Any:
    result = planner(server, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_optimal_json_matches_the_published_optimum(server: ServerProcess) -> None:
    """The issue's acceptance: Epoch at the Gopher budget, params 7.22487e10, tokens 1.32874e12."""
    out = planner_json(server, "optimal", "chinchilla-epoch-2024", "--compute", "5.76e23")
    assert set(out) == {
        "params",
        "tokens",
        "loss",
        "flops",
        "tokens_per_param",
        "binding",
        "intervals",
        "solver",
    }
    assert out["params"] == pytest.approx(7.22487e10, rel=1e-4)
    assert out["tokens"] == pytest.approx(1.32874e12, rel=1e-4)
    assert out["binding"] == ["compute"] and out["solver"] == "closed_form"


def test_optimal_with_cap_and_readable_output(server: ServerProcess) -> None:
    args = ["optimal", "chinchilla-epoch-2024", "--compute", "1e25", "--max-params", "1e11"]
    out = planner_json(server, *args)
    assert out["tokens"] == pytest.approx(1.666667e13, rel=5e-7)
    assert out["binding"] == ["compute", "max_params"]
    text = planner(server, *args)
    assert text.returncode == 0
    assert "1.66667e+13" in text.stdout and "max_params" in text.stdout


def test_families_and_runs_from_csv(
    server: ServerProcess, tmp_path: Path, shared_data: Path
) -> None:
    created = planner_json(server, "families", "create", "cli-c4", "--description", "C4 runs")
    assert created["name"] == "cli-c4" and created["laws"] == []
    # Muennighoff's data-constrained C4 runs, in the CLI's CSV format. Their names are not
    # unique in the published output, so the rows go without run_id (ids derive from values).
    csv_path = tmp_path / "runs.csv"
    columns = ["params_N", "tokens_D", "val_loss", "unique_tokens_U"]
    with (shared_data / "muennighoff_c4_runs.csv").open() as source, csv_path.open("w") as out:
        writer = csv.writer(out)
        writer.writerow(["params", "tokens", "loss", "unique_tokens"])
        rows = [tuple(row[c] for c in columns) for row in csv.DictReader(source)]
        writer.writerows(rows)
    distinct = len({tuple(float(v) for v in row) for row in rows})
    added = planner_json(server, "runs", "add", "cli-c4", str(csv_path))
    assert added == {"added": distinct, "unchanged": len(rows) - distinct, "runs": distinct}
    again = planner_json(server, "runs", "add", "cli-c4", str(csv_path))
    assert again["added"] == 0
    shown = planner_json(server, "families", "show", "cli-c4")
    assert shown["run_count"] == added["added"]
    listed = planner_json(server, "families", "list")
    entry = next(f for f in listed["families"] if f["name"] == "chinchilla-epoch-2024")
    assert set(entry) == {"name", "description", "laws"}
    assert entry["laws"] == [{"form": "chinchilla", "version": 1, "method": "published"}]
    # The family has no chinchilla law: the Chinchilla part is fitted to single-epoch runs.
    fitted = planner_json(
        server,
        "fit",
        "cli-c4",
        "--form",
        "data_constrained",
        "--method",
        "vpnls",
        "--bootstrap",
        "0",
    )
    assert fitted["form"] == "data_constrained" and fitted["version"] == 1
    assert fitted["diagnostics"]["runs"] == distinct
    assert {"r_d_star", "r_n_star", "E", "alpha"} <= set(fitted["params"])
    text = planner(
        server,
        "fit",
        "cli-c4",
        "--form",
        "data_constrained",
        "--method",
        "vpnls",
        "--base",
        "joint",
        "--bootstrap",
        "4",
    )
    assert text.returncode == 0 and "Chinchilla part: joint" in text.stdout
    assert "r_d_star" in text.stdout


def test_optimal_with_repeated_data_reports_epochs(server: ServerProcess) -> None:
    args = ["optimal", "data-constrained-muennighoff-2023", "--compute", "1e22"]
    out = planner_json(server, *args, "--unique-tokens", "25e9")
    assert out["params"] == pytest.approx(7.02616e9, rel=2e-6)
    assert out["epochs"] == pytest.approx(9.4884, rel=1e-4)
    assert out["solver"] == "scalar/bounded"
    text = planner(server, *args, "--unique-tokens", "25e9", "--max-epochs", "4")
    assert text.returncode == 0 and "max_epochs" in text.stdout and "epochs" in text.stdout


def test_predict_json(server: ServerProcess) -> None:
    out = planner_json(
        server, "predict", "chinchilla-epoch-2024", "--params", "7e10", "--tokens", "1.4e12"
    )
    assert set(out) == {"loss", "interval", "interval_kind"}
    assert out["interval_kind"] == "band"
    assert out["loss"] == pytest.approx(1.8172 + 482.01 / 7e10**0.3478 + 2085.43 / 1.4e12**0.3658)
    assert out["interval"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["optimal", "chinchilla-epoch-2024", "--compute", "nan"], "budget.flops"),
        (["optimal", "chinchilla-epoch-2024", "--target-loss", "1.7"], "irreducible"),
        (["optimal", "missing-family", "--compute", "1e21"], "not found"),
        (["families", "create", "chinchilla-epoch-2024"], "already exists"),
    ],
)
def test_errors_exit_non_zero_without_traceback(
    server: ServerProcess, args: list[str], needle: str
) -> None:
    result = planner(server, *args)
    assert result.returncode == 1
    assert needle in result.stderr and "Traceback" not in result.stderr
    as_json = planner(server, "--json", *args)
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert needle in error["message"]


def test_bad_csv_is_a_usage_error(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("params,tokens\n1e9,2e10\n")
    result = planner(server, "runs", "add", "chinchilla-epoch-2024", str(bad))
    assert result.returncode == 2
    assert "header lacks loss" in result.stderr and "Traceback" not in result.stderr
    bad.write_text("params,tokens,loss\n1e9,lots,3.0\n")
    result = planner(server, "runs", "add", "chinchilla-epoch-2024", str(bad))
    assert result.returncode == 2 and "bad.csv:2" in result.stderr


def test_unreachable_server_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(PLANNER), "--target", "127.0.0.1:9", "--timeout", "2", "families", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"params,tokens,loss\n1e9,2e10,3.0,7\n", "more cells than the header"),
        (b"params,params,tokens,loss\n1,2,3,4\n", "appear more than once"),
        (b"params,tokens,loss,step\n1e9,2e10,3.0,1e19\n", "not a step count"),
        ("params,tokens,loss\n1e9,2e10,3.0\n".encode("utf-16"), "not UTF-8"),
        (b"params,tokens,loss\n" + b"9" * 200_000 + b",2e10,3.0\n", "malformed CSV"),
    ],
)
def test_malformed_csv_files(
    server: ServerProcess, tmp_path: Path, content: bytes, needle: str
) -> None:
    bad = tmp_path / "runs.csv"
    bad.write_bytes(content)
    result = planner(server, "runs", "add", "chinchilla-epoch-2024", str(bad))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_csv_with_byte_order_mark(server: ServerProcess, tmp_path: Path) -> None:
    created = planner_json(server, "families", "create", "cli-bom")
    assert created["run_count"] == 0
    path = tmp_path / "excel.csv"
    path.write_bytes("params,tokens,loss\n1e9,2e10,3.0\n".encode("utf-8-sig"))
    assert planner_json(server, "runs", "add", "cli-bom", str(path))["added"] == 1


def epoch_family(server: ServerProcess, folder: Path, data: Path, name: str) -> None:
    """A family holding Epoch's 240 Chinchilla runs, uploaded through the CLI."""
    from tests.unit.test_fitting import epoch_240

    runs = epoch_240(data)
    path = folder / "chinchilla.csv"
    with path.open("w") as out:
        out.write("params,tokens,loss\n")
        for n, d, loss in zip(runs.params, runs.tokens, runs.loss, strict=True):
            out.write(f"{float(n)!r},{float(d)!r},{float(loss)!r}\n")
    planner_json(server, "families", "create", name)
    planner_json(server, "runs", "add", name, str(path))


def test_fit_json(server: ServerProcess, tmp_path: Path, shared_data: Path) -> None:
    epoch_family(server, tmp_path, shared_data, "cli-fit")
    out = planner_json(server, "fit", "cli-fit", "--method", "vpnls", "--bootstrap", "12")
    # DESIGN.md §5's keys, and what a fit now says about trust and choice.
    assert set(out) == {"version", "form", "params", "intervals", "diagnostics"} | {
        "method",
        "current",
        "options",
        "auto",
    }
    assert out["version"] == 1 and out["form"] == "chinchilla"
    assert out["method"] == "vpnls" and out["auto"] is None
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert out["diagnostics"]["runs"] == 240
    assert set(out["intervals"]) <= set(out["params"])
    plan = planner_json(server, "optimal", "cli-fit", "--compute", "1e23")
    assert set(plan["intervals"]) == {"params", "tokens", "loss", "flops"}
    band = plan["intervals"]["params"]
    assert set(band) == {"p5", "p50", "p95"}
    assert band["p5"] <= band["p50"] <= band["p95"]


def test_backtest_json(server: ServerProcess, tmp_path: Path, shared_data: Path) -> None:
    epoch_family(server, tmp_path, shared_data, "cli-backtest")
    out = planner_json(
        server, "backtest", "cli-backtest", "--train-below", "1e21", "--method", "vpnls"
    )
    assert (out["train_runs"], out["test_runs"]) == (217, 23)
    [vpnls] = out["methods"]
    assert vpnls["method"] == "vpnls" and vpnls["failure"] == ""
    assert len(vpnls["runs"]) == 23
    assert set(vpnls["runs"][0]) == {
        "run_id",
        "flops",
        "observed_loss",
        "predicted_loss",
        "relative_error",
    }
    text = planner(
        server,
        "backtest",
        "cli-backtest",
        "--train-below",
        "1e21",
        "--method",
        "vpnls",
        "--method",
        "huber",
    )
    assert text.returncode == 0 and "VPNLS PRED" in text.stdout and "HUBER PRED" in text.stdout


@pytest.mark.parametrize("kind", ["fit", "isoflop", "frontier"])
def test_plots_are_written(
    server: ServerProcess, tmp_path: Path, shared_data: Path, kind: str
) -> None:
    name = f"cli-plot-{kind}"
    epoch_family(server, tmp_path, shared_data, name)
    planner_json(server, "fit", name, "--method", "vpnls", "--bootstrap", "20")
    out = tmp_path / f"{kind}.png"
    result = planner_json(server, "plot", name, "--kind", kind, "--out", str(out))
    assert result == {"out": str(out), "kind": kind}
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_isoflop_and_bnsl_commands(
    server: ServerProcess, tmp_path: Path, shared_data: Path
) -> None:
    """Runs with their nominal budget in the flops column: Approach 2 groups by it exactly."""
    csv_path = tmp_path / "iso.csv"
    with (shared_data / "chinchilla_isoflops_ml_scalefit.csv").open() as source:
        rows = list(csv.DictReader(source))
    with csv_path.open("w") as out:
        writer = csv.writer(out)
        writer.writerow(["params", "tokens", "loss", "flops"])
        writer.writerows([r["params"], r["tokens"], r["loss"], r["budget"]] for r in rows)
    planner_json(server, "families", "create", "cli-iso")
    planner_json(server, "runs", "add", "cli-iso", str(csv_path))
    iso = planner_json(server, "fit", "cli-iso", "--method", "isoflop")
    assert iso["method"] == "isoflop" and "biased" in iso["caveat"]
    assert [v["flops"] for v in iso["vertices"]] == sorted({float(r["budget"]) for r in rows})
    assert 0.462 <= iso["params_exponent"] <= 0.534
    text = planner(server, "fit", "cli-iso", "--method", "isoflop")
    assert text.returncode == 0 and "caveat" in text.stdout and "not stored" in text.stdout
    curve = planner_json(server, "bnsl", "cli-iso", "--predict", "1e20", "1e24")
    assert curve["runs"] == len(rows) and 0 <= curve["breaks"] <= 3
    assert [p["extrapolation"] for p in curve["predictions"]] == [False, True]
    assert curve["fitted_up_to"] == pytest.approx(3e21)
    assert 1.5 < curve["predictions"][1]["value"] < curve["predictions"][0]["value"]


def test_inference_json_has_the_contract_keys(server: ServerProcess) -> None:
    args = ["inference", "inference-sardana-2023", "--inference-tokens", "1e14"]
    out = planner_json(server, *args, "--target-loss", "1.89")
    contract = {"params", "tokens", "loss", "training_flops", "inference_flops", "total_flops"}
    assert contract | {"tokens_per_param", "chinchilla", "saving_flops"} <= set(out)
    assert contract <= set(out["chinchilla"])
    assert out["params"] == pytest.approx(2.347e10, rel=2e-4)
    assert out["total_flops"] == pytest.approx(8.131e24, rel=2e-4)
    text = planner(server, *args, "--target-loss", "1.89")
    assert text.returncode == 0 and "INFERENCE-AWARE" in text.stdout and "saves" in text.stdout
    missing = planner(server, "inference", "inference-sardana-2023", "--target-loss", "2")
    assert missing.returncode == 2
