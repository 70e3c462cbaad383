"""bench/ladders.py against the published files read independently here, and the facts their
sources state: Epoch's 240 points, Muennighoff et al.'s 296 C4 runs, the OLMo ladder's 16 runs
of 190M-1B (final.json) at 1, 2, 5, 10 x 20 tokens per parameter, and the 7B-4T target (n 6.89e9,
3.95e12 tokens per shared/data/README.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench import ladders

C4 = "eval/c4_en-validation/CrossEntropyLoss"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_chinchilla_keeps_epochs_240_points(shared_data: Path) -> None:
    """Epoch drop the 5 highest-loss of 245 points; D = C / 6N."""
    raw = _rows(shared_data / "chinchilla_epoch_svg_extracted.csv")
    assert len(raw) == 245
    losses = sorted(float(r["loss"]) for r in raw)
    runs, flops = ladders.chinchilla_240(shared_data)
    assert len(runs) == 240
    assert runs.loss.max() == losses[239] and losses[240] > losses[239]
    np.testing.assert_allclose(6 * runs.params * runs.tokens, flops, rtol=1e-12)


def test_chinchilla_backtest_holds_out_the_23_runs_at_or_above_1e21(shared_data: Path) -> None:
    ladder = ladders.chinchilla_backtest(shared_data)
    assert (len(ladder.runs), len(ladder.targets)) == (217, 23)
    assert ladder.compute.max() < 1e21 <= ladder.target_compute.min()


def test_muennighoff_runs_and_the_80th_percentile_holdout(shared_data: Path) -> None:
    raw = _rows(shared_data / "muennighoff_c4_runs.csv")
    assert len(raw) == 296
    single = [r for r in raw if float(r["tokens_D"]) <= float(r["unique_tokens_U"])]
    assert len(single) == 41
    compute = np.array([6 * float(r["params_N"]) * float(r["tokens_D"]) for r in single])
    cut = np.quantile(compute, 0.8)
    ladder = ladders.muennighoff_backtest(shared_data)
    assert len(ladder.targets) == int(np.sum(compute >= cut)) == 11
    assert len(ladder.runs) == 30 and ladder.compute.max() < cut
    assert ladder.targets.unique is not None
    assert np.all(ladder.targets.tokens <= ladder.targets.unique)
    everything = ladders.muennighoff_backtest(shared_data, single_epoch=False)
    assert len(everything.runs) + len(everything.targets) == 296
    assert len(everything.targets) == 60  # 20% of 296 at or above the 80th percentile


def test_olmo_final_checkpoints_are_the_16_runs_at_their_chinchilla_multiples(
    shared_data: Path,
) -> None:
    """Each rung's n from final.json; a run named NxC trains on N x 20 x n tokens."""
    config = json.loads((shared_data / "olmo_ladder" / "final.json").read_text())
    ladder = ladders.olmo_ladder(shared_data, "final")
    assert len(ladder.runs) == 16 and ladder.runs.run_count == 16
    expected = {f"{size}-{k}xC" for size in ("190M", "370M", "760M", "1B") for k in (1, 2, 5, 10)}
    assert set(ladder.labels) == expected
    n_of = {"190M": "190M", "370M": "370M", "760M": "760M", "1B": "1.3B"}
    for label, n, tokens, loss in zip(
        ladder.labels, ladder.runs.params, ladder.runs.tokens, ladder.runs.loss, strict=True
    ):
        size, multiple = label.split("-")
        assert n == config[n_of[size]]["n"]
        assert tokens == pytest.approx(int(multiple[:-2]) * 20 * n, rel=0.02), label
        last = _rows(shared_data / "olmo_ladder" / f"{label}.csv")[-1]
        assert loss == float(last[C4]) and tokens == float(last["throughput/total_tokens"])


def test_olmo_all_checkpoints_are_grouped_by_run(shared_data: Path) -> None:
    ladder = ladders.olmo_ladder(shared_data, "all")
    files = sorted(set(ladder.labels))
    rows = sum(
        sum(1 for r in _rows(shared_data / "olmo_ladder" / f"{f}.csv") if r[C4]) for f in files
    )
    assert len(files) == 16 and len(ladder.runs) == rows > 1000
    assert ladder.runs.run_count == 16
    final = ladders.olmo_ladder(shared_data, "final")
    for label, tokens in zip(final.labels, final.runs.tokens, strict=True):
        mine = [i for i, name in enumerate(ladder.labels) if name == label]
        assert ladder.runs.groups is not None
        assert len(set(ladder.runs.groups[mine])) == 1
        assert ladder.runs.tokens[mine].max() == tokens


def test_olmo_targets_3b_runs_and_the_7b_4t_model(shared_data: Path) -> None:
    ladder = ladders.olmo_ladder(shared_data)
    assert ladder.target_labels == ("3B-1xC", "3B-2xC", "3B-5xC", "3B-10xC", "7B-4T")
    for i, multiple in enumerate((1, 2, 5, 10)):
        # 3B's n per the OLMo-ladder scripts' MODEL_PARAMS; its tokens confirm it to 0.1%.
        assert ladder.targets.params[i] == 3_169_537_280
        assert ladder.targets.tokens[i] == pytest.approx(multiple * 20 * 3.1695e9, rel=2e-3)
    n, tokens, loss = (
        ladder.targets.params[4],
        ladder.targets.tokens[4],
        ladder.targets.loss[4],
    )
    assert n == pytest.approx(6.89e9, rel=1e-3)  # README: n 6.89e9, 3.95e12 tokens
    assert tokens == pytest.approx(3.95e12, rel=2e-3)
    assert tokens == 3_945_065_873_408 and loss == pytest.approx(2.4829182624816895, abs=1e-12)
