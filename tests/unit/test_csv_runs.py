"""clients.csv_runs: the optional lr and batch_tokens columns, read as the CLI sends them."""

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
