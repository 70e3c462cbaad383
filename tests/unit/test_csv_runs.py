"""clients.csv_runs: the optional lr, batch_tokens and metric:<name> columns, read as the CLI
sends them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.csv_runs import CsvError, read_runs
from clients.results import Run


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runs.csv"
    path.write_text(text)
    return path


def test_lr_and_batch_tokens_are_read_and_empty_cells_unset(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "batch_tokens,lr,run_id,step,params,tokens,loss\n"
        "1048576,6e-4,grid-1,,1e8,2e9,3.1\n"
        ",0,curve,100,1e8,1e8,3.6\n"
        " 524288 , 3.0e-4 ,curve,200,1e8,2e8,3.4\n"
        ",,plain,,1e8,2e9,3.2\n",
    )
    assert read_runs(path) == [
        Run("grid-1", 1e8, 2e9, 3.1, lr=6e-4, batch_tokens=1_048_576.0),
        Run("curve", 1e8, 1e8, 3.6, step=100, lr=0.0),
        Run("curve", 1e8, 2e8, 3.4, step=200, lr=3e-4, batch_tokens=524_288.0),
        Run("plain", 1e8, 2e9, 3.2),
    ]


@pytest.mark.parametrize("column", ["lr", "batch_tokens"])
def test_a_cell_that_is_not_a_number_names_line_and_column(tmp_path: Path, column: str) -> None:
    path = write(tmp_path, f"params,tokens,loss,{column}\n1e8,2e9,3.1,1e-3\n1e8,2e9,3.0,fast\n")
    with pytest.raises(CsvError) as caught:
        read_runs(path)
    assert str(caught.value) == f"{path}:3: column {column!r}: 'fast' is not a number"


def test_unknown_columns_list_the_new_ones(tmp_path: Path) -> None:
    with pytest.raises(CsvError) as caught:
        read_runs(write(tmp_path, "params,tokens,loss,learning_rate\n1e8,2e9,3.1,1e-3\n"))
    assert "allowed: params,tokens,loss,unique_tokens,flops,step,run_id,weight,lr,batch_tokens" in (
        str(caught.value)
    )


def test_metric_columns_are_read_and_empty_cells_not_measured(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "run_id,step,params,tokens,loss,metric:mmlu_avg_test_bpb,metric:piqa/acc:5-shot.v2\n"
        "r,100,1e8,2e9,3.1,0.75015624391561643, 0.5 \n"
        "r,200,1e8,4e9,3.0,,-1e-300\n"
        "r,300,1e8,6e9,2.9,,\n",
    )
    runs = read_runs(path)
    assert [r.metrics for r in runs] == [
        {"mmlu_avg_test_bpb": 0.7501562439156164, "piqa/acc:5-shot.v2": 0.5},
        {"piqa/acc:5-shot.v2": -1e-300},
        {},
    ]
    assert runs[2] == Run("r", 1e8, 6e9, 2.9, step=300)


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("fast", "is not a number"), ("nan", "is not a finite number"),
     ("-inf", "is not a finite number"), ("1e999", "is not a finite number")],
)  # fmt: skip
def test_a_bad_metric_cell_names_line_and_column(tmp_path: Path, cell: str, problem: str) -> None:
    path = write(
        tmp_path, f"params,tokens,loss,metric:acc\n1e8,2e9,3.1,0.5\n\n1e8,2e9,3.0,{cell}\n"
    )
    with pytest.raises(CsvError) as caught:
        read_runs(path)
    # Line 4: the blank line 3 is skipped but counted, as a spreadsheet numbers it.
    assert str(caught.value) == f"{path}:4: column 'metric:acc': {cell!r} {problem}"


@pytest.mark.parametrize("name", ["", "mmlu acc", "é", "a" * 65, "acc;drop"])
def test_a_bad_metric_name_names_the_column(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"params,tokens,loss,metric:{name}\n1e8,2e9,3.1,0.5\n")
    with pytest.raises(CsvError) as caught:
        read_runs(path)
    assert str(caught.value).startswith(f"{path}: column 'metric:{name}': {name!r} is not a")


def test_at_most_64_metric_columns(tmp_path: Path) -> None:
    names = [f"metric:m{i}" for i in range(65)]
    path = write(tmp_path, ",".join(["params", "tokens", "loss", *names]) + "\n")
    with pytest.raises(CsvError, match="65 metric: columns; at most 64"):
        read_runs(path)
    header = ",".join(["params", "tokens", "loss", *names[:64]])
    row = ",".join(["1e8", "2e9", "3.1", *(str(i) for i in range(64))])
    (run,) = read_runs(write(tmp_path, f"{header}\n{row}\n"))
    assert run.metrics == {f"m{i}": float(i) for i in range(64)}


def test_unknown_columns_mention_metric_columns(tmp_path: Path) -> None:
    with pytest.raises(CsvError) as caught:
        read_runs(write(tmp_path, "params,tokens,loss,metrics:acc\n1e8,2e9,3.1,0.5\n"))
    assert "unknown column(s) metrics:acc;" in str(caught.value)
    assert str(caught.value).endswith(",batch_tokens,metric:<name>")
