"""Accuracy on published ladders: fit on the small runs, predict the held-out large ones.

Each data set of bench/ladders.py is fitted by every method of `SPECS` through the fitting API a
request takes (`planner.fitting.jobs.FitJob(...).validated().fit()`), and the law's prediction
of each held-out run is compared with its observed loss: relative error = predicted / observed
- 1. Beside them, the published fits' errors on the same runs (those fits saw these runs, so
they are in-sample: a floor, not a backtest) and the authors' own extrapolation where known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench import ladders
from bench.domain import log
from planner.errors import PlannerError
from planner.fitting.checkpoints import CheckpointSelection
from planner.fitting.data import Array, Runs
from planner.fitting.jobs import FitJob, FittedLaw
from planner.fitting.options import FitOptions
from planner.laws import ChinchillaLaw, Law
from planner.laws.data_constrained import DataConstrainedLaw

# Published fits (shared/data/README.md).
EPOCH_240 = ChinchillaLaw(E=1.81686, A=482.006, B=2085.434, alpha=0.34781, beta=0.36585)
HOFFMANN_RECIPE_240 = ChinchillaLaw(E=1.8172, A=477.84, B=2143.86, alpha=0.34731, beta=0.36718)
MUENNIGHOFF_C4 = DataConstrainedLaw(
    E=1.869144,
    A=520.83,
    B=1487.72,
    alpha=0.3526596,
    beta=0.3526596,
    r_d_star=15.387756,
    r_n_star=5.309743,
)
# The OLMo authors' step-1 C4 fit from the 190M-1B rungs: 13B-5T predicted 2.3444 (README);
# the issue reports that fit misses 13B-5T's C4 loss by -3.8%. 13B-5T is not in shared/data.
OLMO_13B_PREDICTED = 2.3444
OLMO_13B_MISS = -0.038

# Targets from the issue.
CHINCHILLA_AUTO_MEAN_TARGET = 0.008
OLMO_7B_TARGET = 0.010


@dataclass(frozen=True)
class MethodSpec:
    """A method as the bench names it: the FitJob method, whether exponents are tied and the
    over-estimate penalty (labels as method auto names its candidates)."""

    label: str
    method: str
    tie_exponents: bool = False
    overestimate_penalty: float = 1.0

    def job(
        self,
        runs: Runs,
        compute: Array,
        form: str = "chinchilla",
        checkpoints: CheckpointSelection | None = None,
    ) -> FitJob:
        return FitJob(
            runs=runs,
            form=form,
            method=self.method,
            options=FitOptions(
                tie_exponents=self.tie_exponents, overestimate_penalty=self.overestimate_penalty
            ),
            checkpoints=checkpoints or CheckpointSelection(),
            compute=compute,
        )


# The single methods, then method auto's other candidates (Huber with OLMo-core's
# over-estimate penalty), then auto itself.
NAMED = (
    MethodSpec("vpnls", "vpnls"),
    MethodSpec("huber", "huber"),
    MethodSpec("huber+tied", "huber", tie_exponents=True),
    MethodSpec("vpnls+tied", "vpnls", tie_exponents=True),
)
PENALISED = tuple(
    MethodSpec(f"huber{'+tied' if tied else ''}+penalty{penalty:g}", "huber", tied, penalty)
    for tied in (False, True)
    for penalty in (2.0, 5.0)
)
AUTO = MethodSpec("auto", "auto")
SPECS = (*NAMED, *PENALISED, AUTO)


@dataclass(frozen=True)
class MethodScore:
    """One method's held-out errors (signed, per target) on one data set."""

    label: str
    errors: tuple[float, ...]
    seconds: float
    law: dict[str, float] = field(default_factory=dict)
    chosen: str = ""  # method auto: the candidate it chose
    candidates: tuple[tuple[str, float], ...] = ()  # method auto: (candidate, backtest mean)
    note: str = ""  # why there is no score (failed, not applicable)

    @property
    def scored(self) -> bool:
        return bool(self.errors) and not self.note

    @property
    def mean_abs(self) -> float:
        return float(np.mean(np.abs(self.errors))) if self.scored else float("nan")

    @property
    def max_abs(self) -> float:
        return float(np.max(np.abs(self.errors))) if self.scored else float("nan")


@dataclass(frozen=True)
class Reference:
    """A published figure shown beside the methods: its errors on this set's held-out runs, or
    (`elsewhere` set) on other runs, named there."""

    label: str
    errors: tuple[float, ...] = ()
    note: str = ""
    elsewhere: str = ""

    @property
    def mean_abs(self) -> float:
        return float(np.mean(np.abs(self.errors))) if self.errors else float("nan")

    @property
    def max_abs(self) -> float:
        return float(np.max(np.abs(self.errors))) if self.errors else float("nan")


@dataclass(frozen=True)
class DataSetScore:
    key: str
    name: str
    setup: str  # how it was split and fitted
    train_rows: int
    train_runs: int
    target_labels: tuple[str, ...]
    observed: tuple[float, ...]
    methods: tuple[MethodScore, ...]
    references: tuple[Reference, ...]

    def method(self, label: str) -> MethodScore | None:
        return next((m for m in self.methods if m.label == label), None)

    def best_single(self, labels: tuple[str, ...] | None = None) -> MethodScore | None:
        """The method other than auto (of `labels`, if given) with the lowest mean |error|."""
        scored = [
            m
            for m in self.methods
            if m.label != "auto" and m.scored and (labels is None or m.label in labels)
        ]
        return min(scored, key=lambda m: m.mean_abs) if scored else None


@dataclass(frozen=True)
class AccuracyBench:
    sets: tuple[DataSetScore, ...]
    quick: bool

    def get(self, key: str) -> DataSetScore | None:
        return next((s for s in self.sets if s.key == key), None)


def _predict(law: Law, targets: Runs) -> Array:
    if isinstance(law, DataConstrainedLaw):
        return law.predict(targets.params, targets.tokens, targets.unique)
    assert isinstance(law, ChinchillaLaw)
    return law.predict(targets.params, targets.tokens)


def score(
    spec: MethodSpec,
    ladder: ladders.Ladder,
    form: str = "chinchilla",
    checkpoints: CheckpointSelection | None = None,
) -> MethodScore:
    """Fit `ladder.runs` by `spec` and score the law on `ladder.targets`."""
    if form != "chinchilla" and (spec.tie_exponents or spec.overestimate_penalty != 1.0):
        return MethodScore(spec.label, (), 0.0, note="n/a: options apply to the chinchilla form")
    begin = time.perf_counter()
    try:
        job = spec.job(ladder.runs, ladder.compute, form, checkpoints).validated()
        fitted: FittedLaw = job.fit()
    except PlannerError as error:
        return MethodScore(spec.label, (), time.perf_counter() - begin, note=error.message)
    seconds = time.perf_counter() - begin
    errors = _predict(fitted.law, ladder.targets) / ladder.targets.loss - 1.0
    chosen = ""
    candidates: tuple[tuple[str, float], ...] = ()
    if fitted.choice is not None:
        chosen = fitted.choice.chosen.label
        if fitted.choice.note:
            chosen += f" ({fitted.choice.note})"
        candidates = tuple(
            (s.candidate.label, s.mean_abs_relative_error) for s in fitted.choice.scores
        )
    return MethodScore(
        spec.label,
        tuple(float(e) for e in errors),
        seconds,
        fitted.law.to_mapping(),
        chosen,
        candidates,
    )


def _reference(label: str, law: Law, targets: Runs, note: str = "") -> Reference:
    errors = _predict(law, targets) / targets.loss - 1.0
    return Reference(label, tuple(float(e) for e in errors), note)


@dataclass(frozen=True)
class DataSet:
    key: str
    title: str
    load: Callable[[], ladders.Ladder]
    setup: str
    form: str = "chinchilla"
    checkpoints: CheckpointSelection | None = None
    references: Callable[[ladders.Ladder], tuple[Reference, ...]] = lambda _: ()


def _chinchilla_references(ladder: ladders.Ladder) -> tuple[Reference, ...]:
    return (
        _reference("Epoch's published fit (all 240 points, in-sample)", EPOCH_240, ladder.targets),
        _reference(
            "Hoffmann's recipe on the 240 points, as Epoch report it (in-sample)",
            HOFFMANN_RECIPE_240,
            ladder.targets,
        ),
    )


def _muennighoff_references(ladder: ladders.Ladder) -> tuple[Reference, ...]:
    return (
        _reference(
            "Muennighoff et al.'s published data-constrained fit (in-sample)",
            MUENNIGHOFF_C4,
            ladder.targets,
            "published parameters; they under-predict these runs' losses throughout (their own "
            "182 fitted runs by 6.7% on average), so this is no floor here",
        ),
    )


def _olmo_references(_: ladders.Ladder) -> tuple[Reference, ...]:
    return (
        Reference(
            "OLMo authors' step-1 C4 fit (same 190M-1B rungs)",
            (OLMO_13B_MISS,),
            f"predicts {OLMO_13B_PREDICTED} for 13B-5T, {OLMO_13B_MISS:+.1%} off per the issue "
            "(13B-5T is not in shared/data)",
            elsewhere="13B-5T",
        ),
    )


TAIL = CheckpointSelection("after_fraction", 0.5)

DATA_SETS = (
    DataSet(
        "chinchilla",
        "Chinchilla, Epoch's 240 points, below / above 1e21 FLOPs",
        ladders.chinchilla_backtest,
        "Epoch's 240 Chinchilla points; fit on the runs below 1e21 FLOPs, score the runs at or "
        "above (C = `Training FLOP`, D = C / 6N).",
        references=_chinchilla_references,
    ),
    DataSet(
        "muennighoff",
        "Muennighoff C4 single-epoch runs, Chinchilla form",
        ladders.muennighoff_backtest,
        "Muennighoff et al.'s C4 runs that saw each token at most once (D <= U); the runs at or "
        "above the 80th percentile of compute 6ND are held out, the Chinchilla form is fitted on "
        "the rest.",
        references=_muennighoff_references,
    ),
    DataSet(
        "muennighoff_dc",
        "Muennighoff C4 all runs, data-constrained form",
        lambda: ladders.muennighoff_backtest(single_epoch=False),
        "All of Muennighoff et al.'s C4 runs (repeated data too); the runs at or above the 80th "
        "percentile of compute 6ND are held out; the data-constrained form (base "
        "`single_epoch`: the Chinchilla part from the training runs with D <= U, then R_D*, "
        "R_N*) is fitted on the rest and predicts with each run's U.",
        form="data_constrained",
        references=_muennighoff_references,
    ),
    DataSet(
        "olmo_final",
        "OLMo ladder 190M-1B, final checkpoints",
        ladders.olmo_ladder,
        "OLMo ladder: the 16 runs (1, 2, 5, 10xC) of the 190M-1B rungs in the authors' "
        "final.json, each run's last checkpoint; targets: the last checkpoint of 3B-{1,2,5,10}xC "
        "(N = 3,169,537,280) and the 7B-4T model after annealing (C4 validation loss).",
        references=_olmo_references,
    ),
    DataSet(
        "olmo_all",
        "OLMo ladder 190M-1B, all checkpoints",
        lambda: ladders.olmo_ladder(checkpoints="all"),
        "The same 16 runs with every checkpoint row (grouped by run), FitJob checkpoints `all`; "
        "same targets.",
        checkpoints=CheckpointSelection("all"),
        references=_olmo_references,
    ),
    DataSet(
        "olmo_tail",
        "OLMo ladder 190M-1B, checkpoints after half of each run",
        lambda: ladders.olmo_ladder(checkpoints="all"),
        "The same checkpoint rows, FitJob checkpoints `after_fraction 0.5` (each run's rows "
        "past half its tokens); same targets.",
        checkpoints=TAIL,
        references=_olmo_references,
    ),
)
QUICK_SETS = ("olmo_final",)


def run_set(data_set: DataSet, specs: tuple[MethodSpec, ...] = SPECS) -> DataSetScore:
    ladder = data_set.load()
    scores = []
    for spec in specs:
        result = score(spec, ladder, data_set.form, data_set.checkpoints)
        shown = result.note or (
            f"mean {result.mean_abs:.2%}, max {result.max_abs:.2%}"
            + (f", chose {result.chosen}" if result.chosen else "")
        )
        log(f"  {data_set.key} / {spec.label}: {shown} ({result.seconds:.1f} s)")
        scores.append(result)
    rows = (
        len(ladder.runs)
        if data_set.checkpoints is None
        else len((data_set.checkpoints).select(ladder.runs))
    )
    return DataSetScore(
        key=data_set.key,
        name=data_set.title,
        setup=data_set.setup,
        train_rows=rows,
        train_runs=ladder.runs.run_count,
        target_labels=ladder.target_labels,
        observed=tuple(float(v) for v in ladder.targets.loss),
        methods=tuple(scores),
        references=data_set.references(ladder),
    )


def run(quick: bool) -> AccuracyBench:
    chosen = [s for s in DATA_SETS if not quick or s.key in QUICK_SETS]
    log(f"accuracy: {len(chosen)} data sets x {len(SPECS)} methods")
    return AccuracyBench(tuple(run_set(s) for s in chosen), quick)
