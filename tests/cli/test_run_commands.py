"""`planner runs add|list|delete`: checkpoints, weights, paging and deletion, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cli.test_cli import planner, planner_json
from tests.service.server_process import ServerProcess

EXAMPLE_RUNS = Path(__file__).resolve().parents[2] / "examples" / "runs.csv"


def example_rows() -> list[dict[str, str]]:
    with EXAMPLE_RUNS.open(newline="") as handle:
        return list(csv.DictReader(handle))


def example_family(server: ServerProcess, name: str) -> list[dict[str, str]]:
    """A family holding examples/runs.csv; its rows as the csv module reads them."""
    planner_json(server, "families", "create", name)
    added = planner_json(server, "runs", "add", name, str(EXAMPLE_RUNS))
    rows = example_rows()
    assert added["added"] == len(rows)
    return rows


def key(row: dict[str, str]) -> tuple[str, int, float, float, float]:
    return (
        row["run_id"],
        int(row["step"]),
        float(row["params"]),
        float(row["tokens"]),
        float(row["loss"]),
    )


def listed_key(run: dict[str, object]) -> tuple[object, ...]:
    return (run["run_id"], run["step"], run["params"], run["tokens"], run["loss"])


def test_checkpoints_and_weights_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "ladder.csv"
    written = [
        # run_id, step, params, tokens, loss, weight
        ("small", "1000", "1e8", "2e9", "3.4", "0.5"),
        ("small", "2000", "1e8", "4e9", "3.2", ""),
        ("small", "", "1e8", "4e9", "3.19", "2"),
        ("large", "1000", "1e9", "2e10", "2.9", "1e6"),
        ("", "", "2e9", "4e10", "2.7", "3"),
    ]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["run_id", "step", "params", "tokens", "loss", "weight"])
        writer.writerows(written)
    planner_json(server, "families", "create", "cli-weights")
    added = planner_json(server, "runs", "add", "cli-weights", str(path))
    assert added["added"] == len(written) and added["unchanged"] == 0
    listed = planner_json(server, "runs", "list", "cli-weights", "--all")
    assert listed["next_page_token"] == ""
    runs = listed["runs"]
    assert len(runs) == len(written)
    for run, row in zip(runs, written, strict=True):
        run_id, step, params, tokens, loss, weight = row
        if run_id:  # an empty run_id is derived by the server
            assert run["run_id"] == run_id
        assert run["step"] == (int(step) if step else None)
        assert (run["params"], run["tokens"], run["loss"]) == (
            float(params),
            float(tokens),
            float(loss),
        )
        assert run["weight"] == (float(weight) if weight else None)
    text = planner(server, "runs", "list", "cli-weights")
    assert text.returncode == 0
    assert text.stdout.split()[:8] == [
        "RUN_ID",
        "STEP",
        "PARAMS",
        "TOKENS",
        "LOSS",
        "UNIQUE_TOKENS",
        "FLOPS",
        "WEIGHT",
    ]
    assert "1e+06" in text.stdout and f"{len(written)} rows" in text.stdout


def test_runs_list_pages_through_the_example_ladder(server: ServerProcess) -> None:
    rows = example_family(server, "cli-pages")
    everything = planner_json(server, "runs", "list", "cli-pages", "--all", "--page-size", "7")
    assert [listed_key(r) for r in everything["runs"]] == [key(r) for r in rows]
    pages, token = [], ""
    while True:
        args = ["runs", "list", "cli-pages", "--page-size", "7"]
        page = planner_json(server, *args, *(["--page-token", token] if token else []))
        pages.append(page["runs"])
        token = page["next_page_token"]
        if not token:
            break
    assert [len(p) for p in pages] == [7] * (len(rows) // 7) + [len(rows) % 7]
    assert [listed_key(r) for p in pages for r in p] == [key(r) for r in rows]
    first = planner(server, "runs", "list", "cli-pages", "--page-size", "7")
    assert first.returncode == 0 and "--page-token" in first.stdout and "--all" in first.stdout
    bad = planner(server, "runs", "list", "cli-pages", "--page-size", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_runs_delete_takes_every_checkpoint_or_nothing(server: ServerProcess) -> None:
    rows = example_family(server, "cli-delete")
    gone = "190M-1xC"
    expected = sum(1 for r in rows if r["run_id"] == gone)
    assert expected > 1  # a run with several checkpoints
    out = planner_json(server, "runs", "delete", "cli-delete", gone)
    assert out["deleted"] == expected
    left = planner_json(server, "runs", "list", "cli-delete", "--all")["runs"]
    assert [listed_key(r) for r in left] == [key(r) for r in rows if r["run_id"] != gone]
    # One unknown id: nothing is deleted.
    refused = planner(server, "--json", "runs", "delete", "cli-delete", "190M-2xC", "no-such-run")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "NOT_FOUND" and "no-such-run" in error["message"]
    after = planner_json(server, "runs", "list", "cli-delete", "--all")["runs"]
    assert len(after) == len(left)
    text = planner(server, "runs", "delete", "cli-delete", "190M-2xC")
    assert text.returncode == 0 and "deleted" in text.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            "run_id,step,params,tokens,loss\na,100,1e8,1e9,3.0\na,100,1e8,1e9,2.9\n",
            "repeats line 2",
        ),
        ("run_id,params,tokens,loss\na,1e8,1e9,3.0\na,1e8,2e9,2.9\n", "repeats line 2"),
        (
            "run_id,step,params,tokens,loss\na,100,1e8,1e9,3.0\na,200,2e8,2e9,2.9\n",
            "share its parameter count",
        ),
        ("params,tokens,loss,weight\n1e8,1e9,3.0,heavy\n", "column 'weight'"),
        ("params,tokens,loss,weights\n1e8,1e9,3.0,1\n", "unknown column(s) weights"),
    ],
)
def test_checkpoint_and_weight_csv_errors(
    server: ServerProcess, tmp_path: Path, content: str, needle: str
) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(content)
    result = planner(server, "runs", "add", "chinchilla-epoch-2024", str(path))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_bad_weight_is_refused_by_the_server(server: ServerProcess, tmp_path: Path) -> None:
    planner_json(server, "families", "create", "cli-bad-weight")
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss,weight\n1e8,1e9,3.0,-1\n")
    result = planner(server, "--json", "runs", "add", "cli-bad-weight", str(path))
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and "weight" in json.dumps(error)
    assert planner_json(server, "runs", "list", "cli-bad-weight")["runs"] == []


def test_lr_and_batch_tokens_columns_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(
        "run_id,step,params,tokens,loss,lr,batch_tokens\n"
        "grid-1,,1e8,2e9,3.1,6e-4,1048576\n"
        "curve,100,1e8,1e8,3.6,0,\n"
        "curve,200,1e8,2e8,3.4,3e-4,524288\n"
        "plain,,1e8,2e9,3.2,,\n"
    )
    planner_json(server, "families", "create", "cli-rates")
    assert planner_json(server, "runs", "add", "cli-rates", str(path))["added"] == 4
    runs = planner_json(server, "runs", "list", "cli-rates", "--all")["runs"]
    assert [(r["run_id"], r["lr"], r["batch_tokens"]) for r in runs] == [
        ("grid-1", 6e-4, 1048576.0),
        ("curve", 0.0, None),
        ("curve", 3e-4, 524288.0),
        ("plain", None, None),
    ]
    text = planner(server, "runs", "list", "cli-rates").stdout
    assert text.split()[8:10] == ["LR", "BATCH_TOKENS"] and "1.04858e+06" in text
    # A negative rate is the server's to refuse, naming the row's field.
    path.write_text("run_id,params,tokens,loss,lr\nbad,1e8,2e9,3.1,-1e-4\n")
    refused = planner(server, "--json", "runs", "add", "cli-rates", str(path))
    assert refused.returncode == 1
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["message"].startswith("runs[0].lr:")


def _table(text: str, rows: int) -> list[list[str]]:
    """The `rows` rows of `runs list`'s table (after its header and rule), split on the gaps
    between columns."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("----"))
    return [[c for c in line.split("  ") if c] for line in lines[rule + 1 : rule + 1 + rows]]


def test_metric_columns_round_trip_and_list(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "tasks.csv"
    path.write_text(
        "run_id,step,params,tokens,loss,metric:piqa_val_bpb,metric:piqa_val_acc\n"
        "r,100,1e8,2e9,3.1,0.8747948863685431,0.5\n"
        "r,200,1e8,4e9,3.0,,0.625\n"
        "r,300,1e8,6e9,2.9,,\n"
    )
    planner_json(server, "families", "create", "cli-metrics")
    assert planner_json(server, "runs", "add", "cli-metrics", str(path))["added"] == 3
    runs = planner_json(server, "runs", "list", "cli-metrics", "--all")["runs"]
    assert [r["metrics"] for r in runs] == [
        {"piqa_val_bpb": 0.8747948863685431, "piqa_val_acc": 0.5},
        {"piqa_val_acc": 0.625},
        {},
    ]
    text = planner(server, "runs", "list", "cli-metrics").stdout
    assert text.split()[10] == "METRICS"
    # Few and short: the pairs themselves, by name, at the table's %g precision.
    cells = [row[-1].strip() for row in _table(text, 3)]
    assert cells == ["piqa_val_acc=0.5 piqa_val_bpb=0.874795", "piqa_val_acc=0.625", "-"]


def test_many_metrics_list_as_counts(server: ServerProcess, tmp_path: Path) -> None:
    names = [f"task_{i}_accuracy" for i in range(12)]
    path = tmp_path / "wide.csv"
    path.write_text(
        "run_id,step,params,tokens,loss," + ",".join(f"metric:{n}" for n in names) + "\n"
        "w,1,1e8,2e9,3.1," + ",".join(str(i / 100) for i in range(12)) + "\n"
        "w,2,1e8,4e9,3.0,0.5" + "," * 11 + "\n"
        "w,3,1e8,6e9,2.9" + "," * 12 + "\n"
    )
    planner_json(server, "families", "create", "cli-wide-metrics")
    planner_json(server, "runs", "add", "cli-wide-metrics", str(path))
    runs = planner_json(server, "runs", "list", "cli-wide-metrics")["runs"]
    assert runs[0]["metrics"] == {n: i / 100 for i, n in enumerate(names)}
    text = planner(server, "runs", "list", "cli-wide-metrics").stdout
    # Counts for every row (one row's pairs would not fit), and where the values are.
    assert [row[-1].strip() for row in _table(text, 3)] == ["12", "1", "-"]
    assert "--json lists their names and values" in text
    assert max(len(line) for line in text.splitlines()) < 160


def test_a_bad_metric_column_is_refused_before_sending(
    server: ServerProcess, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("params,tokens,loss,metric:acc\n1e8,1e9,3.0,0.5\n1e8,2e9,2.9,inf\n")
    result = planner(server, "runs", "add", "chinchilla-epoch-2024", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}:3: column 'metric:acc': 'inf' is not a finite number" in result.stderr
