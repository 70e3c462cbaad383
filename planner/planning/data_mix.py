"""Which data pools to train on for a sample budget (Goyal et al. 2024; LAWS.md §5).

A pool of S samples per epoch with utility b < 0 and half-life tau (epochs) has error after n
samples seen, as the authors' `objective.py` computes it,

    y(n) = [(a n_0 / 1e5)^(b_0) + d] * prod_{j>=1} (n_j / n_j^-)^(b_j),
    b_j = b 0.5^(j / tau),  n_j = min(S (j + 1), n),  n_j^- = S j,  j = 0 .. floor(n / S).

A mix is the union of its pools sampled uniformly, so one epoch of the union is S = sum S_i
samples and re-shows every sample once; its utility on epoch j is the size-weighted mean

    b_eff,j = sum_i S_i b_i 0.5^(j / tau_i) / sum_i S_i,

which for p pools of equal size is the paper's (1/p) sum_i b_i 0.5^(j / tau_i) with p S samples
per epoch. (The authors' `estimate_best_pool.py` also multiplies every tau by the number of
buckets before calling the objective; LAWS.md §5 does not, and neither does this module.)

The choice is a discrete enumeration (LAWS.md §10): sort pools by utility, evaluate the union of
the top 1, 2, ..., K at the budget, take the argmin. The product over epochs is a sum of logs
over an epoch array; epochs past 70 half-lives (0.5^70 ~ 1e-21) change y by less than a rounding
error and are not evaluated, so the cost does not grow with the budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from planner.errors import Infeasible, InvalidInput, Unsupported
from planner.validation import finite, non_negative, positive

SOLVER = "enumeration"
NORMALIZER = 1e5  # the authors' sample-count unit
TAIL_HALF_LIVES = 70  # epochs past this many half-lives contribute < 1e-21 to ln y
MAX_EPOCHS = 1_000_000  # epochs evaluated per curve, bounding memory and time per request
MAX_POOLS = 1000
MAX_COMPARE = 100
MAX_WORK = 20_000_000  # pools x epochs evaluated per plan (~0.3 s of numpy)

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Pool:
    """One data bucket: size in samples per epoch, utility b < 0, half-life tau in epochs."""

    name: str
    size: float
    utility: float
    half_life: float

    def validated(self, field: str = "pool") -> Pool:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(f"{field}.name", "must be a non-empty string")
        utility = finite(f"{field}.utility", self.utility)
        if utility >= 0:
            raise InvalidInput(f"{field}.utility", f"must be < 0, got {utility:g}")
        return Pool(
            self.name,
            positive(f"{field}.size", self.size),
            utility,
            positive(f"{field}.half_life", self.half_life),
        )


@dataclass(frozen=True)
class DataMixQuery:
    """The pools on offer, the budget in samples seen, and the shared a and d; `compare_at`
    are further budgets at which every candidate is also evaluated (to show the choice move)."""

    pools: tuple[Pool, ...]
    samples: float
    a: float = 1.0
    d: float = 0.1
    compare_at: tuple[float, ...] = ()

    def validated(self) -> DataMixQuery:
        if len(self.compare_at) > MAX_COMPARE:
            raise InvalidInput(
                "compare_at", f"at most {MAX_COMPARE} budgets, got {len(self.compare_at)}"
            )
        return DataMixQuery(
            pools=_validated_pools(self.pools),
            samples=positive("samples", self.samples),
            a=positive("a", self.a),
            d=non_negative("d", self.d),
            compare_at=tuple(
                positive(f"compare_at[{i}]", value) for i, value in enumerate(self.compare_at)
            ),
        )


@dataclass(frozen=True)
class PoolShare:
    """A chosen pool: the samples drawn from it and how many times each was seen."""

    name: str
    samples: float
    epochs: float


@dataclass(frozen=True)
class Candidate:
    """The union of the top pools by utility, its predicted error at the budget and at each
    of the query's `compare_at` budgets."""

    pools: tuple[str, ...]
    predicted_error: float
    compare_errors: tuple[float, ...] = ()


@dataclass(frozen=True)
class DataMixPlan:
    """The best candidate's pools (utility order) and error, and every candidate evaluated."""

    pools: tuple[PoolShare, ...]
    predicted_error: float
    candidates: tuple[Candidate, ...]
    solver: str


def _validated_pools(pools: Sequence[Pool]) -> tuple[Pool, ...]:
    if len(pools) == 0:
        raise InvalidInput("pools", "give at least one pool")
    if len(pools) > MAX_POOLS:
        raise InvalidInput("pools", f"at most {MAX_POOLS} pools, got {len(pools)}")
    checked = tuple(pool.validated(f"pools[{i}]") for i, pool in enumerate(pools))
    seen: dict[str, int] = {}
    for i, pool in enumerate(checked):
        if pool.name in seen:
            raise InvalidInput(f"pools[{i}].name", f"duplicate of pools[{seen[pool.name]}].name")
        seen[pool.name] = i
    return checked


def effective_utility(pools: Sequence[Pool], epochs: ArrayLike) -> Floats:
    """b_eff,j of the union of `pools` on epoch indices j (size-weighted mean of decayed b)."""
    j = np.asarray(epochs, dtype=np.float64)
    weighted = np.zeros_like(j)
    for pool in pools:  # a loop over pools, not epochs: O(len(j)) memory
        weighted += pool.size * pool.utility * np.exp2(-j / pool.half_life)
    return np.asarray(weighted / math.fsum(pool.size for pool in pools), dtype=np.float64)


def _epochs_needed(half_life: float, full_epochs: float) -> int:
    """Epoch indices to evaluate: up to the last epoch begun, or the tail cut of the longest
    half-life."""
    # Compare as floats first: a huge half-life makes the cut infinite, which ceil rejects.
    needed = min(full_epochs, TAIL_HALF_LIVES * half_life)
    if needed > MAX_EPOCHS:
        raise Unsupported(
            f"this budget and half-life need {needed:.3g} epochs evaluated, more than the "
            f"{MAX_EPOCHS:,} this planner does; use a smaller budget or half-life"
        )
    return math.ceil(needed)


def _log_errors(b_eff: Floats, total: float, samples: Floats, a: float, d: float) -> Floats:
    """ln y at each sample count for a union of `total` samples per epoch whose utility on
    epoch j is b_eff[j]; epochs past the end of b_eff (the tail cut) are not evaluated."""
    # Python's // and %, as the authors' `samples_seen // samples_per_epoch`: n = J S + r exactly.
    full, rest = np.divmod(samples, total)
    last = int(min(float(full.max()), len(b_eff) - 1))
    j = np.arange(1, last + 1, dtype=np.float64)
    # cumulative[m] = sum_{j=1..m} b_j ln((j+1)/j): the full repeated epochs 1..m.
    cumulative = np.concatenate(([0.0], np.cumsum(b_eff[1 : last + 1] * np.log1p(1.0 / j))))
    within = full <= last
    index = np.minimum(full, last).astype(np.int64)  # exact: integral floats <= MAX_EPOCHS
    # Epochs 1..J-1 are full; past the tail cut every evaluated epoch is full.
    repeated = cumulative[np.where(within, np.maximum(index - 1, 0), last)]
    # Epoch J is partial (r / S of it done; r = 0 adds nothing); skipped past the cut.
    current = np.where(within & (index >= 1), index, 0)
    partial = np.where(
        current >= 1,
        b_eff[current] * np.log1p(rest / (total * np.maximum(current, 1))),
        0.0,
    )
    head = (a * np.minimum(samples, total) / NORMALIZER) ** b_eff[0] + d
    return np.asarray(np.log(head) + repeated + partial, dtype=np.float64)


def _union_log_errors(pools: Sequence[Pool], samples: Floats, a: float, d: float) -> Floats:
    total = math.fsum(pool.size for pool in pools)
    full = float(np.floor_divide(samples, total).max())
    last = _epochs_needed(max(pool.half_life for pool in pools), full)
    return _log_errors(effective_utility(pools, np.arange(last + 1)), total, samples, a, d)


def _checked_samples(field: str, samples: ArrayLike) -> Floats:
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise InvalidInput(field, "give at least one sample count")
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        index = np.unravel_index(int(bad[0]), values.shape)
        positive(f"{field}[{', '.join(str(int(i)) for i in index)}]", float(values[index]))
    return values


def _finite_errors(log_errors: Floats, what: str) -> Floats:
    with np.errstate(over="ignore", invalid="ignore"):
        errors = np.exp(log_errors)
    if not np.all(np.isfinite(errors) & (errors > 0)):
        raise Infeasible(
            f"the predicted error of {what} leaves floating-point range; the utilities are too "
            "steep for these sample counts (check their scale against a and the 1e5 unit)"
        )
    return errors


def error_curve(
    pools: Sequence[Pool], samples: ArrayLike, a: float = 1.0, d: float = 0.1
) -> Floats:
    """Predicted error of the union of `pools` at each sample count (any array shape)."""
    checked = _validated_pools(pools)
    values = _checked_samples("samples", samples)
    a, d = positive("a", a), non_negative("d", d)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_errors = _union_log_errors(checked, values.ravel(), a, d)
    flat = _finite_errors(log_errors, "this mix")
    return flat.reshape(values.shape)


def plan_data_mix(query: DataMixQuery) -> DataMixPlan:
    """The best union of the top-k pools by utility for the budget, and all K candidates."""
    query = query.validated()
    ranked = sorted(query.pools, key=lambda pool: pool.utility)  # stable: ties keep input order
    budgets = np.array([query.samples, *query.compare_at])
    totals = list(itertools.accumulate(pool.size for pool in ranked))
    longest = list(itertools.accumulate((pool.half_life for pool in ranked), max))
    # One epoch array serves every prefix: prefix k needs min(J_k, tail cut_k) + 1 entries.
    length = 1 + max(
        _epochs_needed(tau, float(np.floor_divide(budgets.max(), total)))
        for tau, total in zip(longest, totals, strict=True)
    )
    if len(ranked) * length > MAX_WORK:
        raise Unsupported(
            f"{len(ranked)} pools over {length:,} epochs each is more than this planner "
            "evaluates per request; use fewer pools, a smaller budget or shorter half-lives"
        )
    j = np.arange(length, dtype=np.float64)
    weighted = np.zeros(length)  # sum_i S_i b_i 0.5^(j / tau_i) over the prefix so far
    candidates: list[Candidate] = []
    for k, pool in enumerate(ranked):
        weighted += pool.size * pool.utility * np.exp2(-j / pool.half_life)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log_errors = _log_errors(weighted / totals[k], totals[k], budgets, query.a, query.d)
        errors = _finite_errors(log_errors, f"the top {k + 1} pools")
        names = tuple(p.name for p in ranked[: k + 1])
        candidates.append(Candidate(names, float(errors[0]), tuple(map(float, errors[1:]))))
    # Exact ties go to the smaller mix: fewer pools to curate for the same error.
    best = min(range(len(candidates)), key=lambda k: candidates[k].predicted_error)
    shares = tuple(
        PoolShare(pool.name, query.samples * pool.size / totals[best], query.samples / totals[best])
        for pool in ranked[: best + 1]
    )
    return DataMixPlan(shares, candidates[best].predicted_error, tuple(candidates), SOLVER)


def overtake_budget(
    filtered: Sequence[Pool],
    larger: Sequence[Pool],
    low: float,
    high: float,
    a: float = 1.0,
    d: float = 0.1,
    points: int = 2001,
) -> float | None:
    """The smallest sample budget in [low, high] from which `larger` predicts a lower error than
    `filtered` (the quality-quantity crossover): `low` if it already does at `low`, None if it
    never does in the range.

    Found on a log-spaced scan, then refined by Brent's method on the difference of ln y, which
    is continuous in n (adjacent epochs meet); a crossing narrower than the scan step is missed.
    """
    low, high = positive("low", low), positive("high", high)
    if high <= low:
        raise InvalidInput("high", f"must be > low = {low:g}, got {high:g}")
    if points < 2:
        raise InvalidInput("points", f"must be >= 2, got {points}")
    small, big = _validated_pools(filtered), _validated_pools(larger)
    a, d = positive("a", a), non_negative("d", d)
    grid = np.geomspace(low, high, points)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        larger_log = _union_log_errors(big, grid, a, d)
        filtered_log = _union_log_errors(small, grid, a, d)
    _finite_errors(larger_log, "the larger mix")
    _finite_errors(filtered_log, "the filtered mix")
    gap = larger_log - filtered_log
    if gap[0] < 0:
        return low
    below = np.flatnonzero(gap < 0)
    if below.size == 0:
        return None
    i = int(below[0])

    def difference(n: float) -> float:
        at = np.array([n])
        return float(_union_log_errors(big, at, a, d)[0] - _union_log_errors(small, at, a, d)[0])

    return float(brentq(difference, grid[i - 1], grid[i], xtol=1e-300, rtol=1e-14))


# --- Fitting one pool's (b, tau) with a and d fixed (LAWS.md §5 "Fitting") ----------------------


@dataclass(frozen=True)
class PoolFit:
    """The grid point minimising the squared error, and that sum of squares."""

    utility: float
    half_life: float
    sse: float


def fit_pool(
    samples: ArrayLike,
    errors: ArrayLike,
    size: float,
    a: float = 1.0,
    d: float = 0.1,
    utilities: ArrayLike | None = None,
    half_lives: ArrayLike | None = None,
) -> PoolFit:
    """Grid search over b (default linspace(-0.005, -0.5, 100)) and tau (linspace(1, 10, 100))
    for one pool of `size` samples per epoch, observed at `errors` after `samples` seen.

    The authors chose a grid because scipy optimisers were unstable. b factors out of the
    repetition sum, ln y = ln((a n_0/1e5)^b + d) + b G(tau, n), so G is one matrix product.
    """
    n = _checked_samples("samples", samples).ravel()
    observed = np.asarray(errors, dtype=np.float64).ravel()
    if observed.shape != n.shape:
        raise InvalidInput("errors", f"need one per sample count ({n.size}), got {observed.size}")
    if not np.all(np.isfinite(observed)):
        raise InvalidInput("errors", "must all be finite numbers")
    size, a, d = positive("size", size), positive("a", a), non_negative("d", d)
    b_grid = np.linspace(-0.005, -0.5, 100) if utilities is None else np.asarray(utilities, float)
    tau_grid = np.linspace(1, 10, 100) if half_lives is None else np.asarray(half_lives, float)
    if b_grid.size == 0 or not np.all(np.isfinite(b_grid) & (b_grid < 0)):
        raise InvalidInput("utilities", "must be a non-empty grid of finite values < 0")
    if tau_grid.size == 0 or not np.all(np.isfinite(tau_grid) & (tau_grid > 0)):
        raise InvalidInput("half_lives", "must be a non-empty grid of finite values > 0")
    b_grid, tau_grid = b_grid.ravel(), tau_grid.ravel()

    full, rest = np.divmod(n, size)
    last = _epochs_needed(float(tau_grid.max()), float(full.max()))
    j = np.arange(1, last + 1, dtype=np.float64)
    # weights[j-1, m]: ln(n_j / n_j^-) of epoch j for sample count m (0 past the current epoch).
    weights = np.where(j[:, None] < full[None, :], np.log1p(1.0 / j)[:, None], 0.0)
    partial = np.log1p(rest / (size * np.maximum(full, 1.0)))
    current = (j[:, None] == full[None, :]) & (full[None, :] >= 1)
    weights = np.where(current, partial[None, :], weights)
    decay = np.exp2(-j[None, :] / tau_grid[:, None])  # (tau, j)
    repeated = decay @ weights  # G(tau, n)
    base = a * np.minimum(n, size) / NORMALIZER
    sse = np.empty((b_grid.size, tau_grid.size))
    with np.errstate(over="ignore", invalid="ignore"):
        for row, b in enumerate(b_grid):  # 100 rows of a (tau, n) array each
            predicted = np.exp(np.log(base**b + d)[None, :] + b * repeated)
            sse[row] = np.sum((predicted - observed[None, :]) ** 2, axis=1)
    sse = np.where(np.isfinite(sse), sse, np.inf)
    if not np.isfinite(sse.min()):
        raise Infeasible("no grid point gives a finite prediction for these samples")
    i, k = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return PoolFit(float(b_grid[i]), float(tau_grid[k]), float(sse[i, k]))


@dataclass(frozen=True)
class ObservedPool:
    """A pool whose utility and half-life are not known but fitted to its own runs: the error
    observed after each number of samples seen (with the query's a and d)."""

    name: str
    size: float
    samples: tuple[float, ...]
    errors: tuple[float, ...]


@dataclass(frozen=True)
class FittedMix:
    """The plan, and the (utility, half-life) fitted for each observed pool, by name."""

    plan: DataMixPlan
    fits: tuple[tuple[str, PoolFit], ...]


# Two parameters per pool are fitted: fewer runs than this leave them undetermined.
MIN_OBSERVATIONS = 3
# The grid search costs 1e4 x observations x epochs; a pool's ladder of runs is far smaller.
MAX_OBSERVATIONS = 1000


def plan_with_observed_pools(
    pools: Sequence[Pool | ObservedPool],
    samples: float,
    a: float = 1.0,
    d: float = 0.1,
    compare_at: tuple[float, ...] = (),
) -> FittedMix:
    """Fit every observed pool's (b, tau) by the grid search, then plan as usual."""
    a, d = positive("a", a), non_negative("d", d)
    # The sizes are checked before any fit: a fit costs 1e4 x observations x epochs.
    if len(pools) > MAX_POOLS:
        raise InvalidInput("pools", f"at most {MAX_POOLS} pools, got {len(pools)}")
    for i, pool in enumerate(pools):
        if isinstance(pool, ObservedPool) and not (
            MIN_OBSERVATIONS <= len(pool.samples) <= MAX_OBSERVATIONS
        ):
            raise InvalidInput(
                f"pools[{i}].observations",
                f"need {MIN_OBSERVATIONS} to {MAX_OBSERVATIONS} to fit utility and half_life, "
                f"got {len(pool.samples)}",
            )
    given: list[Pool] = []
    fits: list[tuple[str, PoolFit]] = []
    for i, pool in enumerate(pools):
        if isinstance(pool, Pool):
            given.append(pool)
            continue
        field = f"pools[{i}]"
        for k, error in enumerate(pool.errors):
            positive(f"{field}.observations[{k}].error", error)
        for k, seen in enumerate(pool.samples):
            positive(f"{field}.observations[{k}].samples", seen)
        fit = fit_pool(pool.samples, pool.errors, positive(f"{field}.size", pool.size), a, d)
        given.append(Pool(pool.name, pool.size, fit.utility, fit.half_life))
        fits.append((pool.name, fit))
    query = DataMixQuery(tuple(given), samples, a, d, compare_at)
    return FittedMix(plan_data_mix(query), tuple(fits))
