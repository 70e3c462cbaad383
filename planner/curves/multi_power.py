"""The Multi-Power Law (Luo et al., ICLR 2025, arXiv 2503.12811): loss along a whole training
run as a function of its learning-rate schedule.

    L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t)
    LD(t) = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)),  G(x) = 1 - (C x + 1)^-beta
    S_k(t) = sum_{tau=k..t} eta_tau

Conventions, as in the authors' evaluation code (src/evaluation.py of thu-yao-01-luo/
MultiPowerLaw), and verified by reproducing their published PredE / WorstE from their parameters:
eta is the whole per-step schedule, warm-up included, indexed from step 0 (see
planner.curves.schedules); S1(t) + S_W is the LR summed over steps 0..t; the loss-drop sum runs
over every step from k = 1, so the warm-up's LR increases (eta_{k-1} - eta_k < 0) enter LD too.
A step k at LR 0 has an infinite G argument (G = 1) unless no LR has been applied since
(S_k(t) = 0, G = 0): the limits for gamma < 1.

Evaluation is vectorised and only at the requested steps; only LR changes contribute. The terms
of a step t are grouped by distance from it: the `resolution` (r) steps before t one by one, then
aligned blocks of 2, 4, 8, ... steps, at least r of each size, so that a block of size s lies at
distance >= r s and its S_k(t) varies by about 1/r across it. Blocks whose ln LR spreads more than
2/r (a warm-up's first steps, a jump) are split down until it does not. A block's LR decreases and
increases are summed separately and placed at their change-weighted centre (mean LR, mean area
before), which errs by O(1/r^2) of the block's share: about 1e-7 relative to the loss at r = 32
(measured against the exact sum; the tests bound it). Each step then costs O(r log T) terms
instead of O(T). `resolution=None` sums every term exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planner.curves.schedules import Array, validate_lrs
from planner.errors import InvalidInput
from planner.validation import finite, non_negative, positive

Index = NDArray[np.intp]

# Near-field width (see the module docstring). 32 keeps the prediction within ~1e-7 relative
# of the exact sum on the published schedules (measured; tests check a bound).
DEFAULT_RESOLUTION = 32
# Terms built and evaluated at once by predict: bounds its memory to a few hundred MiB.
CHUNK_TERMS = 1 << 22


def validate_steps(steps: ArrayLike, total: int, field: str = "steps") -> Index:
    """Requested steps as integer indices into a schedule of `total` steps."""
    try:
        values = np.asarray(steps)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, "must be a sequence of integers") from exc
    if values.ndim != 1 or values.size == 0:
        raise InvalidInput(field, "must be a non-empty one-dimensional sequence")
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InvalidInput(field, "must all be whole numbers")
    elif values.dtype.kind not in "iu":
        raise InvalidInput(field, "must be a sequence of integers")
    index = values.astype(np.intp)
    bad = np.flatnonzero((index < 0) | (index >= total))
    if bad.size:
        raise InvalidInput(
            field, f"must lie in [0, {total - 1}] (the schedule's steps), got {values[bad[0]]}"
        )
    return index


@dataclass(frozen=True)
class LossDropTerms:
    """LD of each requested step written as a weighted sum of G terms:
    LD[row] / B = sum over terms of that row of weight * G(exp(-gamma log_lr) * area)."""

    rows: Index  # the requested step (row) each term belongs to
    weight: Array  # eta_{k-1} - eta_k (a block: its increases or its decreases, summed)
    log_lr: Array  # ln eta_k (a block: its weighted mean LR)
    area: Array  # S_k(t) (a block: from its weighted centre)
    count: int  # number of rows

    @property
    def size(self) -> int:
        return int(self.rows.size)


@dataclass(frozen=True)
class PreparedCurve:
    """What the law needs of one schedule at its requested steps, parameter-free: built once,
    evaluated for any parameters (the fit evaluates it thousands of times)."""

    steps: Index
    total_area: Array  # S1(t) + S_W: LR summed over steps 0..t
    terms: LossDropTerms


def _log(values: Array) -> Array:
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(values))


class _Levels:
    """Block sums of the LR changes, split by sign, at sizes 1, 2, 4, ... (pairwise sums, so
    no cancellation from differencing prefix sums), and the spread of ln LR over each block's
    changed steps."""

    def __init__(self, lrs: Array, total_area: Array, change: Array, log_lr: Array) -> None:
        before = total_area - lrs  # LR summed over steps 0..k-1
        rises = np.minimum(change, 0.0)
        drops = np.maximum(change, 0.0)
        changed = change != 0.0
        # Per sign: sum of changes, of change x LR, of change x (LR summed before the step).
        self._sums = [[np.stack([part, part * lrs, part * before]) for part in (drops, rises)]]
        self._low = [np.where(changed, log_lr, np.inf)]
        self._high = [np.where(changed, log_lr, -np.inf)]

    def _grow(self, number: int) -> None:
        while len(self._sums) <= number:
            merged = []
            for sums in self._sums[-1]:
                padded = np.pad(sums, ((0, 0), (0, sums.shape[1] % 2)))
                merged.append(padded[:, 0::2] + padded[:, 1::2])
            self._sums.append(merged)
            low = self._low[-1]
            low = np.pad(low, (0, low.size % 2), constant_values=np.inf)
            self._low.append(np.minimum(low[0::2], low[1::2]))
            high = self._high[-1]
            high = np.pad(high, (0, high.size % 2), constant_values=-np.inf)
            self._high.append(np.maximum(high[0::2], high[1::2]))

    def sums(self, number: int) -> list[Array]:
        self._grow(number)
        return self._sums[number]

    def spread(self, number: int, blocks: Index) -> Array:
        """max - min of ln LR over each block's changed steps (-inf for none, inf at a 0 LR)."""
        self._grow(number)
        with np.errstate(invalid="ignore"):
            spread = self._high[number][blocks] - self._low[number][blocks]
        return np.where(np.isnan(spread), np.inf, spread)


class _Terms:
    """Collects terms (row, weight, ln LR, area) as they are produced."""

    def __init__(self) -> None:
        self.parts: list[tuple[Index, Array, Array, Array]] = []

    def add(self, rows: Index, weight: Array, log_lr: Array, area: Array) -> None:
        self.parts.append((rows, weight, log_lr, area))

    def build(self, count: int) -> LossDropTerms:
        columns = [np.concatenate(column) for column in zip(*self.parts, strict=True)]
        return LossDropTerms(columns[0], columns[1], columns[2], columns[3], count)


def loss_drop_terms(lrs: Array, steps: Index, resolution: int | None) -> LossDropTerms:
    """The terms of LD at each of `steps` (validated inputs; see the module docstring)."""
    total_area = np.cumsum(lrs)
    change = np.zeros_like(lrs)
    change[1:] = lrs[:-1] - lrs[1:]
    log_lr = _log(lrs)
    if resolution is None:
        return _exact_terms(lrs, steps, total_area, change, log_lr)
    levels = _Levels(lrs, total_area, change, log_lr)
    # A block's ln LR may spread at most this much: its centroid then stands for its G values
    # to second order in 1/resolution, as the distance rule gives.
    max_spread = 2.0 / resolution
    # 1. Partition [0, t] of each row by distance: (rows, blocks) per level.
    pending: dict[int, list[tuple[Index, Index]]] = {}
    rows = np.arange(steps.size, dtype=np.intp)
    end = steps.astype(np.int64) + 1  # blocks cover [start, end) of k; k = 0 has no change
    level = 0
    while rows.size:
        size = 1 << level
        start = np.maximum((end - resolution * size) // (2 * size) * (2 * size), 0)
        counts = (end - start) // size
        block_rows = np.repeat(rows, counts)
        offsets = np.arange(block_rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        blocks = np.repeat(start // size, counts) + offsets
        pending.setdefault(level, []).append((block_rows, blocks.astype(np.intp)))
        active = start > 0
        rows, end = rows[active], start[active]
        level += 1
    # 2. From the coarsest level down: emit blocks whose LR barely varies, split the others.
    terms = _Terms()
    for level in range(max(pending), 0, -1):
        block_rows = np.concatenate([r for r, _ in pending[level]])
        blocks = np.concatenate([b for _, b in pending[level]])
        split = levels.spread(level, blocks) > max_spread
        for sums in levels.sums(level):
            weight = sums[0][blocks]
            keep = (weight != 0.0) & ~split
            w, b, r = weight[keep], blocks[keep], block_rows[keep]
            terms.add(r, w, _log(sums[1][b] / w), total_area[steps[r]] - sums[2][b] / w)
        parents, parent_rows = blocks[split], block_rows[split]
        children = np.concatenate([2 * parents, 2 * parents + 1])
        pending.setdefault(level - 1, []).append((np.tile(parent_rows, 2), children))
    block_rows = np.concatenate([r for r, _ in pending[0]])
    k = np.concatenate([b for _, b in pending[0]])
    keep = (k < lrs.size) & (k > 0)
    k, block_rows = k[keep], block_rows[keep]
    keep = change[k] != 0.0
    k, block_rows = k[keep], block_rows[keep]
    t = steps[block_rows]
    # S_k(t) = P(t) - P(k) + eta_k: differences of nearby partial sums, then one LR.
    terms.add(block_rows, change[k], log_lr[k], (total_area[t] - total_area[k]) + lrs[k])
    return terms.build(steps.size)


def _exact_terms(
    lrs: Array, steps: Index, total_area: Array, change: Array, log_lr: Array
) -> LossDropTerms:
    """Every k in [1, t] whose LR changed, for each requested step t."""
    changed = np.flatnonzero(change)
    counts = np.searchsorted(changed, steps, side="right")
    rows = np.repeat(np.arange(steps.size, dtype=np.intp), counts)
    k = changed[np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)]
    t = steps[rows]
    area = (total_area[t] - total_area[k]) + lrs[k]
    return LossDropTerms(rows, change[k], log_lr[k], area, int(steps.size))


def prepare(
    lrs: ArrayLike, steps: ArrayLike, resolution: int | None = DEFAULT_RESOLUTION
) -> PreparedCurve:
    """Validate a schedule and its requested steps and build their loss-drop terms."""
    schedule = validate_lrs(lrs)
    index = validate_steps(steps, schedule.size)
    resolution = _resolution(resolution)
    _require_area(schedule, index)
    return _prepare(schedule, index, resolution)


def _prepare(schedule: Array, index: Index, resolution: int | None) -> PreparedCurve:
    total_area = np.cumsum(schedule)
    return PreparedCurve(index, total_area[index], loss_drop_terms(schedule, index, resolution))


def _require_area(schedule: Array, index: Index) -> None:
    total_area = np.cumsum(schedule)
    zero = np.flatnonzero(total_area[index] <= 0)
    if zero.size:
        raise InvalidInput(
            "steps",
            f"step {index[zero[0]]} comes before any training (LR summed so far is 0), "
            "where the law is undefined",
        )


def _row_chunks(steps: Index, lrs: Array, resolution: int | None) -> list[Index]:
    """Row chunks of about CHUNK_TERMS terms each, to bound memory whatever the request."""
    if resolution is None:
        changed = np.flatnonzero(lrs[:-1] != lrs[1:]) + 1
        per_row = np.searchsorted(changed, steps, side="right")
    else:
        # Per level at most r + 1 blocks of each sign; splitting adds a few levels' worth.
        levels = int(np.log2(lrs.size)) + 4
        per_row = np.full(steps.size, 2 * (resolution + 2) * levels)
    ends = np.cumsum(per_row)
    cuts = np.searchsorted(ends, np.arange(CHUNK_TERMS, int(ends[-1]), CHUNK_TERMS))
    bounds = np.unique(np.concatenate([[0], cuts, [steps.size]]))
    return [np.arange(lo, hi) for lo, hi in itertools.pairwise(bounds.tolist()) if hi > lo]


def _resolution(resolution: int | None) -> int | None:
    if resolution is None:
        return None
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer):
        raise InvalidInput("resolution", f"must be an integer or None, got {resolution!r}")
    if resolution < 1:
        raise InvalidInput(
            "resolution", f"must be >= 1 (or None for the exact sum), got {resolution}"
        )
    return int(resolution)


def _argument(log_lr: Array, area: Array, gamma: float) -> Array:
    """eta^-gamma S: infinite at a zero LR, but 0 where no LR has been applied since."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.exp(-gamma * log_lr) * area
    return np.where(area > 0.0, x, 0.0)


@dataclass(frozen=True)
class MultiPowerLaw:
    """Parameters of the Multi-Power Law (names as in the paper)."""

    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float

    form: ClassVar[str] = "multi_power"
    NAMES: ClassVar[tuple[str, ...]] = ("L0", "A", "alpha", "B", "C", "beta", "gamma")

    def __post_init__(self) -> None:
        for name in self.NAMES:
            field = f"parameters.{name}"
            value = getattr(self, name)
            if name == "L0":
                checked = finite(field, value)
            elif name in ("A", "B"):
                checked = non_negative(field, value)
            else:
                checked = positive(field, value)
            object.__setattr__(self, name, checked)

    @classmethod
    def from_mapping(cls, values: dict[str, float]) -> MultiPowerLaw:
        unknown = sorted(set(values) - set(cls.NAMES))
        if unknown:
            raise InvalidInput(f"parameters.{unknown[0]}", f"unknown; expected {list(cls.NAMES)}")
        missing = [name for name in cls.NAMES if name not in values]
        if missing:
            raise InvalidInput(f"parameters.{missing[0]}", "is required")
        return cls(**{name: values[name] for name in cls.NAMES})

    def to_mapping(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def as_vector(self) -> Array:
        return np.array([getattr(self, name) for name in self.NAMES], dtype=np.float64)

    def predict(
        self, lrs: ArrayLike, steps: ArrayLike, resolution: int | None = DEFAULT_RESOLUTION
    ) -> Array:
        """Loss after each of `steps` (indices into the per-step schedule `lrs`)."""
        schedule = validate_lrs(lrs)
        index = validate_steps(steps, schedule.size)
        resolution = _resolution(resolution)
        _require_area(schedule, index)
        out = np.empty(index.size)
        for chunk in _row_chunks(index, schedule, resolution):
            out[chunk] = self.evaluate(_prepare(schedule, index[chunk], resolution))
        return out

    def evaluate(self, curve: PreparedCurve) -> Array:
        """The loss at a prepared curve's steps."""
        return np.asarray(
            self.L0 + self.A * curve.total_area ** (-self.alpha) - self.loss_drop(curve.terms)
        )

    def loss_drop(self, terms: LossDropTerms) -> Array:
        """LD(t) of each row of the terms."""
        x = _argument(terms.log_lr, terms.area, self.gamma)
        g = -np.expm1(-self.beta * np.log1p(self.C * x))
        drop = np.bincount(terms.rows, weights=terms.weight * g, minlength=terms.count)
        return np.asarray(self.B * drop, dtype=np.float64)


def relative_errors(predicted: Array, observed: Array) -> tuple[float, float]:
    """Mean and worst |predicted - observed| / observed (the paper's PredE and WorstE of one
    curve)."""
    error = np.abs(predicted - observed) / observed
    return float(np.mean(error)), float(np.max(error))
