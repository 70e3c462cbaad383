"""Published scaling ladders as `Runs`, split into runs to fit and held-out targets.

Shared by the accuracy benchmark (bench/accuracy.py) and its short version in the tests
(tests/unit/test_accuracy_short.py, tests/unit/test_ladders.py). The data live in `shared/data/`
beside the repository (its README cites each file's source):

- Chinchilla (Hoffmann et al. 2022, Figure 4 as digitised by Epoch AI, Besiroglu et al. 2024):
  245 runs; Epoch drop the 5 highest-loss points and fit 240. N = `Model Size`,
  C = `Training FLOP`, D = C / 6N. Backtest: fit below 1e21 FLOPs, score the 23 runs at or above.
- Muennighoff et al. 2023, C4 runs: N, D, unique tokens U, validation loss (296 runs), C = 6ND.
  The runs at or above the 80th percentile of compute are held out (see `muennighoff_backtest`).
- OLMo ladder (Bhagia et al. 2024): per-checkpoint evaluations of the 190M-1B rungs' 16 runs
  that the authors' `final.json` lists (1xC, 2xC, 5xC, 10xC each), C4 validation loss, C = 6ND;
  targets are the 3B rung's runs of the same multiples and the 7B-4T model after annealing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from planner.fitting.data import Array, Runs

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

CHINCHILLA_FILE = "chinchilla_epoch_svg_extracted.csv"
CHINCHILLA_DROPPED = 5  # Epoch drop the 5 highest-loss points
CHINCHILLA_TRAIN_BELOW = 1e21

MUENNIGHOFF_FILE = "muennighoff_c4_runs.csv"
# Runs at or above this quantile of compute are held out (ties at the cut go to the held-out side).
MUENNIGHOFF_HELD_OUT_QUANTILE = 0.8

OLMO_DIR = "olmo_ladder"
C4_LOSS = "eval/c4_en-validation/CrossEntropyLoss"
TOKENS = "throughput/total_tokens"
OLMO_TRAIN_RUNGS = ("190M", "370M", "760M", "1.3B")
OLMO_TARGET_RUNG = "7B-4T"
# final.json has no 3B rung; its non-embedding parameter count is the one the authors use for
# "3B" (OLMo-ladder MODEL_PARAMS, e.g. src/scripts/paper/*.py, src/scaling/utils.py).
OLMO_3B_PARAMS = 3_169_537_280
OLMO_MULTIPLES = (1, 2, 5, 10)

Checkpoints = Literal["final", "all"]


@dataclass(frozen=True)
class Ladder:
    """Runs to fit and held-out targets, each row with its compute and its run's label.

    `runs.groups` ties the checkpoints of one run together (None when each row is a run).
    Compute is `Training FLOP` for Chinchilla and 6ND elsewhere.
    """

    name: str
    runs: Runs
    compute: Array
    labels: tuple[str, ...]
    targets: Runs
    target_compute: Array
    target_labels: tuple[str, ...]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _split(
    name: str, runs: Runs, compute: Array, labels: tuple[str, ...], train_below: float
) -> Ladder:
    train = np.flatnonzero(compute < train_below)
    test = np.flatnonzero(compute >= train_below)
    return Ladder(
        name=name,
        runs=runs.subset(train),
        compute=compute[train],
        labels=tuple(labels[i] for i in train),
        targets=runs.subset(test),
        target_compute=compute[test],
        target_labels=tuple(labels[i] for i in test),
    )


# -- Chinchilla (Epoch's 240 points) ------------------------------------------------------------


def chinchilla_240(data_dir: Path = SHARED_DATA) -> tuple[Runs, Array]:
    """Epoch's 240 points (the 5 highest-loss rows dropped) and their `Training FLOP`."""
    rows = _read(data_dir / CHINCHILLA_FILE)
    params = np.array([float(r["Model Size"]) for r in rows])
    flops = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(loss, kind="stable")[: len(rows) - CHINCHILLA_DROPPED])
    runs = Runs.of(params[keep], flops[keep] / (6 * params[keep]), loss[keep])
    return runs, flops[keep]


def chinchilla_backtest(
    data_dir: Path = SHARED_DATA, train_below: float = CHINCHILLA_TRAIN_BELOW
) -> Ladder:
    """Fit on the runs below `train_below` FLOPs, hold out the rest (23 runs at 1e21)."""
    runs, flops = chinchilla_240(data_dir)
    labels = tuple(f"N={n:.3g}, C={c:.3g}" for n, c in zip(runs.params, flops, strict=True))
    return _split("Chinchilla (Epoch's 240 points)", runs, flops, labels, train_below)


# -- Muennighoff et al. C4 runs -----------------------------------------------------------------


def muennighoff_runs(data_dir: Path = SHARED_DATA) -> tuple[Runs, Array, tuple[str, ...]]:
    """All 296 runs with unique tokens U, their compute 6ND and names."""
    rows = _read(data_dir / MUENNIGHOFF_FILE)
    params = np.array([float(r["params_N"]) for r in rows])
    tokens = np.array([float(r["tokens_D"]) for r in rows])
    unique = np.array([float(r["unique_tokens_U"]) for r in rows])
    loss = np.array([float(r["val_loss"]) for r in rows])
    runs = Runs.of(params, tokens, loss, unique_tokens=unique)
    return runs, 6 * params * tokens, tuple(r["name"] for r in rows)


def muennighoff_backtest(
    data_dir: Path = SHARED_DATA,
    single_epoch: bool = True,
    held_out_quantile: float = MUENNIGHOFF_HELD_OUT_QUANTILE,
) -> Ladder:
    """Hold out the runs with compute at or above the `held_out_quantile` of compute (linear
    interpolation), fit on the rest. `single_epoch`: only the runs with D <= U (41), the
    Chinchilla form's domain; otherwise all 296 (for the data-constrained form)."""
    runs, compute, names = muennighoff_runs(data_dir)
    if single_epoch:
        assert runs.unique is not None
        keep = np.flatnonzero(runs.tokens <= runs.unique * (1 + 1e-9))
        runs, compute = runs.subset(keep), compute[keep]
        names = tuple(names[i] for i in keep)
    cut = float(np.quantile(compute, held_out_quantile))
    label = "single-epoch runs" if single_epoch else "all runs"
    return _split(f"Muennighoff C4 ({label})", runs, compute, names, cut)


# -- OLMo ladder --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    """One entry of the authors' final.json: its files, parameter count n and role."""

    name: str
    files: tuple[str, ...]  # file names inside olmo_ladder/
    n: int
    mode: str  # "train" (fitted) or "eval" (predicted)


def olmo_rungs(data_dir: Path = SHARED_DATA) -> dict[str, Rung]:
    """final.json's rungs by name ('190M', ..., '1.3B', '7B-4T', '13B-5T')."""
    raw = json.loads((data_dir / OLMO_DIR / "final.json").read_text())
    return {
        name: Rung(
            name=name,
            files=tuple(Path(str(path)).name for path in entry["paths"]),
            n=int(entry["n"]),
            mode=str(entry["mode"]),
        )
        for name, entry in raw.items()
    }


def _olmo_rows(path: Path) -> tuple[Array, Array]:
    """(tokens seen, C4 loss) of every row with a C4 loss, in file (= step) order."""
    rows = [row for row in _read(path) if row.get(C4_LOSS)]
    return (
        np.array([float(row[TOKENS]) for row in rows]),
        np.array([float(row[C4_LOSS]) for row in rows]),
    )


def olmo_ladder(data_dir: Path = SHARED_DATA, checkpoints: Checkpoints = "final") -> Ladder:
    """The 190M-1B rungs' 16 runs as the authors list them in final.json, and the targets.

    checkpoints="final": each run's last checkpoint (16 rows); "all": every checkpoint row with a
    C4 loss, grouped by run (its file). Targets: the last checkpoint of 3B-{1,2,5,10}xC and the
    7B-4T model's annealed final evaluation (n from final.json).
    """
    rungs = olmo_rungs(data_dir)
    folder = data_dir / OLMO_DIR
    params: list[float] = []
    tokens: list[float] = []
    loss: list[float] = []
    labels: list[str] = []
    for name in OLMO_TRAIN_RUNGS:
        rung = rungs[name]
        for file in rung.files:
            seen, c4 = _olmo_rows(folder / file)
            if checkpoints == "final":
                seen, c4 = seen[-1:], c4[-1:]
            label = Path(file).stem
            params.extend([float(rung.n)] * seen.size)
            tokens.extend(seen)
            loss.extend(c4)
            labels.extend([label] * seen.size)
    runs = Runs.of(params, tokens, loss, groups=labels)
    n_arr, d_arr = np.array(params), np.array(tokens)

    target_params: list[float] = []
    target_tokens: list[float] = []
    target_loss: list[float] = []
    target_labels: list[str] = []
    for multiple in OLMO_MULTIPLES:
        label = f"3B-{multiple}xC"
        seen, c4 = _olmo_rows(folder / f"{label}.csv")
        target_params.append(float(OLMO_3B_PARAMS))
        target_tokens.append(float(seen[-1]))
        target_loss.append(float(c4[-1]))
        target_labels.append(label)
    big = rungs[OLMO_TARGET_RUNG]
    for file in big.files:
        seen, c4 = _olmo_rows(folder / file)
        target_params.append(float(big.n))
        target_tokens.append(float(seen[-1]))
        target_loss.append(float(c4[-1]))
        target_labels.append(OLMO_TARGET_RUNG)
    targets = Runs.of(target_params, target_tokens, target_loss)
    return Ladder(
        name=f"OLMo ladder, 190M-1B ({checkpoints} checkpoints)",
        runs=runs,
        compute=6 * n_arr * d_arr,
        labels=tuple(labels),
        targets=targets,
        target_compute=6 * targets.params * targets.tokens,
        target_labels=tuple(target_labels),
    )
