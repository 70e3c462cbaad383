"""Checkpoint selection, run-level resampling and method auto's rolling-origin backtest, each
checked against a computation written out here."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import InvalidInput
from planner.fitting import auto
from planner.fitting.checkpoints import CheckpointSelection, cluster_resamples, final_rows
from planner.fitting.chinchilla import fit_chinchilla
from planner.fitting.data import Runs
from planner.fitting.options import FitOptions

# Three runs: a (3 checkpoints), b (2), c (1, a finished run).
LABELS = ["a", "a", "a", "b", "b", "c"]
TOKENS = [10.0, 20.0, 30.0, 10.0, 40.0, 5.0]


def toy() -> Runs:
    return Runs.of([1.0] * 6, TOKENS, [3.0, 2.0, 1.0, 3.0, 2.0, 1.0], groups=LABELS)


def test_selection_modes() -> None:
    runs = toy()
    assert CheckpointSelection("final").rows(runs).tolist() == [2, 4, 5]
    assert CheckpointSelection("all").rows(runs).tolist() == list(range(6))
    # a keeps tokens >= 15 (20, 30), b keeps >= 20 (40), c keeps its only row.
    assert CheckpointSelection("after_fraction", 0.5).rows(runs).tolist() == [1, 2, 4, 5]
    # Rows without runs are finished runs: all kept whatever the mode.
    plain = Runs.of([1.0, 2.0], [3.0, 4.0], [1.0, 1.0])
    assert CheckpointSelection("final").rows(plain).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("selection", "field"),
    [
        (CheckpointSelection("latest"), "options.checkpoints"),
        (CheckpointSelection("after_fraction", 0.0), "options.after_fraction"),
        (CheckpointSelection("after_fraction", 1.5), "options.after_fraction"),
        (CheckpointSelection("final", 0.5), "options.after_fraction"),
    ],
)
def test_bad_selections(selection: CheckpointSelection, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        selection.validated()
    assert caught.value.field == field


def test_resamples_bring_whole_runs() -> None:
    runs = toy()
    sizes = {"a": 3, "b": 2, "c": 1}
    rows_of = {label: [i for i, x in enumerate(LABELS) if x == label] for label in sizes}
    for sample in cluster_resamples(runs, 50, seed=4):
        counts = {label: int(np.isin(sample, rows).sum()) for label, rows in rows_of.items()}
        draws = {label: counts[label] / sizes[label] for label in sizes}
        assert all(float(k).is_integer() for k in draws.values()), counts
        assert sum(draws.values()) == 3  # three runs drawn, with replacement
        for label, rows in rows_of.items():  # a drawn run brings each of its rows equally often
            assert len({int((sample == r).sum()) for r in rows}) == 1, label


def test_resamples_are_reproducible_and_plain_without_runs() -> None:
    runs = toy()
    first = cluster_resamples(runs, 5, seed=9)
    assert all(
        np.array_equal(x, y) for x, y in zip(first, cluster_resamples(runs, 5, 9), strict=True)
    )
    plain = Runs.of([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert all(len(s) == 3 for s in cluster_resamples(plain, 5, seed=1))


def test_candidates_follow_the_callers_options() -> None:
    labels = [c.label for c in auto.candidates(FitOptions())]
    free = ["vpnls", "huber", "huber+penalty2", "huber+penalty5"]
    tied = ["vpnls+tied", "huber+tied", "huber+tied+penalty2", "huber+tied+penalty5"]
    assert labels == free + tied
    assert [c.label for c in auto.candidates(FitOptions(tie_exponents=True))] == tied
    both = FitOptions.of(fixed={"alpha": 0.3, "beta": 0.3})
    assert [c.label for c in auto.candidates(both)] == free
    penalised = FitOptions.of(overestimate_penalty=3.0)
    assert [c.label for c in auto.candidates(penalised)] == [
        "huber+penalty3",
        "huber+tied+penalty3",
    ]


def ladder(rng: np.random.Generator) -> tuple[Runs, np.ndarray]:
    """Eight sizes x three token multipliers, two checkpoints per run, 0.5% noise."""
    sizes = np.repeat(np.geomspace(3e7, 3e9, 8), 3)
    tokens = sizes * np.tile([10.0, 20.0, 40.0], 8)
    rows_n = np.repeat(sizes, 2)
    rows_d = np.repeat(tokens, 2) * np.tile([0.5, 1.0], sizes.size)
    loss = 1.8 + 480 / rows_n**0.35 + 2000 / rows_d**0.36
    loss = loss * np.exp(rng.normal(scale=0.005, size=loss.size))
    groups = np.repeat(np.arange(sizes.size), 2)
    return Runs.of(rows_n, rows_d, loss, groups=groups), 6 * rows_n * rows_d


def test_held_out_errors_fit_below_the_cut_and_score_final_checkpoints() -> None:
    runs, compute = ladder(np.random.default_rng(0))
    finals = final_rows(runs)
    cut = float(np.sort(compute[finals])[18])
    candidate = auto.Candidate("vpnls", FitOptions())
    errors = auto.held_out_errors(runs, compute, cut, candidate, CheckpointSelection("final"))
    # Written out: a run trains when its final compute is below the cut; its final row is fitted.
    run_final = {int(runs.groups[i]): compute[i] for i in finals}  # type: ignore[index]
    train = [i for i in finals if run_final[int(runs.groups[i])] < cut]  # type: ignore[index]
    test = [i for i in finals if compute[i] >= cut]
    law = fit_chinchilla(runs.subset(np.array(train)), "vpnls").law
    expected = [
        (law.E + law.A / runs.params[i] ** law.alpha + law.B / runs.tokens[i] ** law.beta)
        / runs.loss[i]
        - 1
        for i in test
    ]
    assert len(test) == 6 and errors == pytest.approx(expected, rel=1e-9)


def test_auto_picks_the_lowest_held_out_error() -> None:
    runs, compute = ladder(np.random.default_rng(1))
    pool = (auto.Candidate("vpnls", FitOptions()), auto.Candidate("vpnls", FitOptions(True)))
    choice = auto.choose(runs, compute, FitOptions(), CheckpointSelection(), pool)
    assert choice.folds == len(auto.HOLDOUTS)
    cuts = auto.fold_cuts(compute[final_rows(runs)], 5)
    for score in choice.scores:
        folds = [
            np.abs(auto.held_out_errors(runs, compute, cut, score.candidate, CheckpointSelection()))
            for cut in cuts
        ]
        assert score.mean_abs_relative_error == pytest.approx(np.mean([f.mean() for f in folds]))
        assert score.max_abs_relative_error == pytest.approx(max(f.max() for f in folds))
    best = min(choice.scores, key=lambda s: s.mean_abs_relative_error)
    assert choice.chosen == best.candidate


def test_too_few_runs_fall_back_without_a_backtest() -> None:
    runs = Runs.of(np.geomspace(1e7, 1e9, 7), np.geomspace(1e9, 1e11, 7)[::-1], np.full(7, 3.0))
    choice = auto.choose(runs, 6 * runs.params * runs.tokens, FitOptions(), CheckpointSelection())
    assert choice.folds == 0 and choice.chosen.label == "huber" and "too few" in choice.note
