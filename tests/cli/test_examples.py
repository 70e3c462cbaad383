"""examples/: the files are what examples/README.md says they are, parse as the CLI reads them,
and every `planner` command in the top-level README runs as written."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from clients.csv_runs import read_runs
from clients.planning_commands import read_jobs, read_pools
from planner_api.v1 import planner_pb2 as pb
from tests.cli.test_cli import PLANNER
from tests.service.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
README = REPO / "README.md"
LOSS = "eval/c4_en-validation/CrossEntropyLoss"
FRACTIONS = (0.5, 0.625, 0.75, 0.875)  # examples/README.md, step 2


def example_rows() -> list[dict[str, str]]:
    with (EXAMPLES / "runs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_runs_csv_is_the_documented_olmo_selection(shared_data: Path) -> None:
    ladder = shared_data / "olmo_ladder"
    config = json.loads((ladder / "final.json").read_text())
    rungs = {
        Path(path).stem: int(rung["n"])
        for rung in config.values()
        if rung["mode"] == "train"
        for path in rung["paths"]
    }
    assert len(rungs) == 16
    rows = example_rows()
    assert list(rows[0]) == ["run_id", "step", "params", "tokens", "loss"]
    by_run: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    assert set(by_run) == set(rungs)
    expected_rows = 0
    for stem, n in rungs.items():
        with (ladder / f"{stem}.csv").open(newline="") as handle:
            source = {int(float(r["_step"])): r for r in csv.DictReader(handle)}
        last = source[max(source)]
        total = float(last["throughput/total_tokens"])
        ordered = [source[step] for step in sorted(source)]
        picked = {
            int(
                float(
                    next(r for r in ordered if float(r["throughput/total_tokens"]) >= f * total)[
                        "_step"
                    ]
                )
            )
            for f in FRACTIONS
        } | {max(source)}
        expected_rows += len(picked)
        mine = by_run[stem]
        assert [int(r["step"]) for r in mine] == sorted(picked)
        for row in mine:
            origin = source[int(row["step"])]
            assert int(row["params"]) == n
            assert float(row["tokens"]) == float(origin["throughput/total_tokens"])
            assert row["loss"] == origin[LOSS]
            assert float(row["tokens"]) >= 0.5 * total
        assert (int(mine[-1]["step"]), float(mine[-1]["tokens"])) == (max(source), total)
    assert len(rows) == expected_rows < 300
    # The CLI's reader takes the file as it is.
    runs = read_runs(EXAMPLES / "runs.csv")
    assert [(r.run_id, r.step, r.loss) for r in runs] == [
        (r["run_id"], int(r["step"]), float(r["loss"])) for r in rows
    ]


def test_make_runs_csv_reproduces_the_file(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "runs.csv"
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "make_runs_csv.py"),
            "--source",
            str(shared_data / "olmo_ladder"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert out.read_bytes() == (EXAMPLES / "runs.csv").read_bytes()


def test_example_json_files_parse() -> None:
    raw_pools = json.loads((EXAMPLES / "pools.json").read_text())
    pools, a, d = read_pools(str(EXAMPLES / "pools.json"))
    assert (a, d) == (raw_pools["a"], raw_pools["d"])
    assert [(p.name, p.size, p.utility, p.half_life) for p in pools] == [
        (p["name"], p["size"], p["utility"], p["half_life"]) for p in raw_pools["pools"]
    ]
    assert all(p.utility < 0 and p.size > 0 and p.half_life > 0 for p in pools)
    raw_jobs = json.loads((EXAMPLES / "jobs.json").read_text())["jobs"]
    jobs = read_jobs(str(EXAMPLES / "jobs.json"))
    assert [(j.name, j.family, j.weight) for j in jobs] == [
        (j["name"], j["family"], j["weight"]) for j in raw_jobs
    ]


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"### {title}")
    end = text.find("\n## ", start)
    following = text.find("\n### ", start + 1)
    ends = [e for e in (end, following) if e != -1]
    return text[start : min(ends)] if ends else text[start:]


def test_readme_documents_every_input_field() -> None:
    """Each field of the messages the JSON files and CSV become, per the proto."""
    pools = _readme_section("POOLS.json")
    for name in pb.DataPool.DESCRIPTOR.fields_by_name:
        assert f"`pools[].{name}`" in pools, name
    for name in ("a", "d"):
        assert name in pb.PlanDataMixRequest.DESCRIPTOR.fields_by_name
        assert f"| `{name}` |" in pools
    jobs = _readme_section("JOBS.json")
    for name in pb.BudgetJob.DESCRIPTOR.fields_by_name:
        if name == "law":  # a LawSelector: family, form, version
            for part in pb.LawSelector.DESCRIPTOR.fields_by_name:
                assert f"`jobs[].{part}`" in jobs, part
        else:
            assert f"`jobs[].{name}`" in jobs, name
    runs = _readme_section("Runs CSV")
    for name in pb.Run.DESCRIPTOR.fields_by_name:
        if name != "tags":  # not a CSV column
            assert f"| `{name}` |" in runs, name


def readme_commands() -> list[list[str]]:
    """Every `.venv/bin/planner ...` line of the README's sh blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [
        shlex.split(line, comments=True)
        for block in blocks
        # A command continued over lines (a trailing backslash) is one command.
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith(".venv/bin/planner ")
    ]


def test_readme_commands_run_as_written(server: ServerProcess, tmp_path: Path) -> None:
    commands = readme_commands()
    words = [" ".join(c) for c in commands]
    for needed in (
        "runs add my-family examples/runs.csv",
        "datamix --pools examples/pools.json",
        "allocate --jobs examples/jobs.json",
        "laws show my-family",
        "laws promote my-family",
        "--interval prediction",
        "runs delete my-family",
        "laws put mpl-25m",
        "curve mpl-25m",
        "schedule mpl-25m",
        "compare overtraining-gadre-2024-refinedweb overtraining-gadre-2024-redpajama",
        "families create laion-clip --metric",
        "laws put laion-clip --form compute_power",
        "compare laion-mammut laion-clip",
        "runs add olmo-tasks examples/olmo_tasks.csv",
        "task fit olmo-tasks --task mmlu_avg_test",
        "task predict olmo-tasks --task mmlu_avg_test",
        "task plot olmo-tasks --task mmlu_avg_test mmlu.png",
        "optimal olmo-tasks --target-accuracy mmlu_avg_test=0.6",
    ):
        assert any(needed in w for w in words), needed
    # From a copy of the repository root's examples/, so that written files land in tmp_path.
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    for command in commands:
        assert command[0] == ".venv/bin/planner"
        result = subprocess.run(
            [str(PLANNER), "--target", server.target, *command[1:]],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    for picture in ("mix.png", "frontier.png", "curves.png", "optimal.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
