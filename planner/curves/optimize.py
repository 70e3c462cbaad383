"""Learning-rate schedules chosen by a loss-curve law: the best WSD decay fraction, and the
loss-optimal non-increasing schedule after the warm-up, each against cosine.

Every search minimises the predicted loss after the last step (the "final loss"). That needs
only one row of the law, so it is evaluated exactly (no block grouping) in O(T), and so is its
gradient with respect to every per-step rate:

* Multi-Power Law, with S_k the rate summed over steps k..T-1, d_k = eta_{k-1} - eta_k and
  x_k = eta_k^-gamma S_k: dL/d eta_j = -alpha A S^(-alpha-1) - B [G(x_{j+1}) - G(x_j)
  + sum_{k<=j} d_k G'(x_k) eta_k^-gamma - gamma d_j G'(x_j) x_j / eta_j];
* LR-annealing law: L is -C S2 plus a convex decreasing power of S1, and S2(T-1) =
  sum_j (eta_{j-1} - eta_j)(1 - lambda^(T-j)) / (1 - lambda) weighs eta_j by -lambda^(T-1-j)
  (j >= 1), so L = f(sum eta) + C sum_j lambda^(T-1-j) eta_j + constant: convex in the rates
  (LAWS.md §8.2). For C > 0 the weights grow towards the end, so the box-constrained optimum
  (already non-increasing, hence optimal under monotonicity too) is the peak up to one step, the
  floor after it, and at most one step in between: found exactly by trying every switch step
  (prefix sums) and a scalar solve for the step in between ("convex_threshold").

The general solver (any curve law) parametrises the rates after the warm-up as a piecewise-
linear curve through K knots, denser towards the end where the decay happens, with values
floor + (peak - floor) q_i and q_i = r_0 r_1 ... r_i, r in [0, 1]: every r in its box gives a
non-increasing schedule within [floor, peak], so L-BFGS-B with bounds applies directly. It starts
from the best linear WSD and from cosine and keeps the better end point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from planner.curves.lr_annealing import AnnealingLaw
from planner.curves.multi_power import MultiPowerLaw
from planner.curves.schedules import MAX_STEPS, Array, DecayShape, cosine, wsd
from planner.errors import InvalidInput, SolverFailed
from planner.validation import non_negative, positive

CurveLaw = MultiPowerLaw | AnnealingLaw
Objective = Callable[[Array], tuple[float, Array]]

# Coarse grid of decay fractions tried before the bounded scalar search (guards against a
# second local minimum, e.g. a law that also likes no decay at all).
FRACTION_GRID = 41
# Knots of the general solver (fewer when the run has fewer steps after the warm-up).
DEFAULT_KNOTS = 96
# The general solver explores rates down to this share of the peak: the Multi-Power Law's
# G(eta^-gamma S) has an unbounded slope at a zero rate.
MIN_RATE_SHARE = 1e-3
MAX_ITERATIONS = 3000


@dataclass(frozen=True)
class ScheduleProblem:
    """Steps in all, peak and lowest rate, linear warm-up steps (the request's names)."""

    total_steps: int
    peak_lr: float
    floor_lr: float
    warmup_steps: int

    def __post_init__(self) -> None:
        total = _whole("total_steps", self.total_steps, 1)
        warmup = _whole("warmup_steps", self.warmup_steps, 0)
        if warmup >= total:
            raise InvalidInput("warmup_steps", f"must be below total_steps ({total}), got {warmup}")
        peak = positive("peak_lr", self.peak_lr)
        floor = non_negative("floor_lr", self.floor_lr)
        if floor >= peak:
            raise InvalidInput("floor_lr", f"must be below peak_lr ({peak:g}), got {floor:g}")
        object.__setattr__(self, "total_steps", total)
        object.__setattr__(self, "warmup_steps", warmup)
        object.__setattr__(self, "peak_lr", peak)
        object.__setattr__(self, "floor_lr", floor)

    def warmup(self) -> Array:
        return np.linspace(0.0, self.peak_lr, self.warmup_steps)

    def cosine(self) -> Array:
        return cosine(self.total_steps, self.peak_lr, self.floor_lr, self.warmup_steps)

    def wsd(self, fraction: float, shape: DecayShape) -> Array:
        return wsd(
            self.total_steps,
            self.peak_lr,
            self.floor_lr,
            self.warmup_steps,
            decay_fraction=fraction,
            shape=shape,
        )


def _whole(field: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(field, f"must be an integer, got {value!r}")
    if not low <= value <= MAX_STEPS:
        raise InvalidInput(field, f"must be in [{low}, {MAX_STEPS:,}], got {value}")
    return int(value)


@dataclass(frozen=True)
class DecayChoice:
    """The WSD decay fraction with the lowest predicted final loss."""

    decay_fraction: float
    final_loss: float
    lrs: Array
    cosine_final_loss: float
    evaluations: int
    solver: str

    @property
    def gain_over_cosine(self) -> float:
        return self.cosine_final_loss - self.final_loss


@dataclass(frozen=True)
class OptimalSchedule:
    """The loss-optimal non-increasing schedule found, with the best WSD met on the way."""

    lrs: Array
    final_loss: float
    cosine_final_loss: float
    solver: str
    evaluations: int

    @property
    def gain_over_cosine(self) -> float:
        return self.cosine_final_loss - self.final_loss


# --- final loss and its gradient --------------------------------------------------------------


def final_loss(law: CurveLaw, lrs: Array) -> float:
    """The predicted loss after the schedule's last step, exactly."""
    last = [lrs.size - 1]
    if isinstance(law, MultiPowerLaw):
        return float(law.predict(lrs, last, resolution=None)[0])
    return float(law.predict(lrs, last)[0])


def multi_power_gradient(law: MultiPowerLaw, lrs: Array) -> tuple[float, Array]:
    """The Multi-Power final loss and its gradient in every per-step rate (module docstring).
    Rates of zero are allowed where they stay constant (the warm-up's first step)."""
    suffix = np.cumsum(lrs[::-1])[::-1]  # S_k: the rate summed over steps k..T-1
    total = float(suffix[0])
    change = np.zeros_like(lrs)
    change[1:] = lrs[:-1] - lrs[1:]
    g = np.zeros(lrs.size + 1)  # G(x_k) for k = 0..T (no term at k = 0 or k = T)
    slope = np.zeros(lrs.size)  # G'(x_k) eta_k^-gamma
    tilt = np.zeros(lrs.size)  # gamma G'(x_k) x_k / eta_k
    live = lrs > 0
    live[0] = False
    with np.errstate(divide="ignore"):
        power = np.where(live, lrs, 1.0) ** -law.gamma
    x = power * suffix
    u = 1.0 + law.C * x
    g_live = -np.expm1(-law.beta * np.log1p(law.C * x))
    g[:-1] = np.where(live, g_live, 0.0)
    # A zero rate after training resumes: G's limit is 1 and its slope terms vanish.
    g[:-1] = np.where(~live & (suffix > 0) & (np.arange(lrs.size) > 0), 1.0, g[:-1])
    g_prime = law.beta * law.C * u ** (-law.beta - 1.0)
    slope = np.where(live, g_prime * power, 0.0)
    tilt = np.where(live, law.gamma * g_prime * x / np.where(live, lrs, 1.0), 0.0)
    drop = float(np.dot(change, g[:-1]))
    value = law.L0 + law.A * total**-law.alpha - law.B * drop
    inner = (g[1:] - g[:-1]) + np.cumsum(change * slope) - change * tilt
    gradient = -law.alpha * law.A * total ** (-law.alpha - 1.0) - law.B * inner
    return float(value), gradient


def annealing_weights(law: AnnealingLaw, steps: int) -> Array:
    """dS2(T-1) / d eta_j for a schedule of `steps` steps (linear: S2 is linear in the rates)."""
    decay = law.decay
    weights = -(decay ** np.arange(steps - 1, -1, -1, dtype=np.float64))
    if steps > 1:
        weights[0] = (1.0 - decay ** (steps - 1)) / (1.0 - decay)
    else:
        weights[0] = 0.0
    return weights


def annealing_gradient(law: AnnealingLaw, lrs: Array) -> tuple[float, Array]:
    """The LR-annealing final loss and its gradient in every per-step rate."""
    weights = annealing_weights(law, lrs.size)
    total = float(lrs.sum())
    s2 = float(np.dot(weights, lrs))
    value = law.L0 + law.A * total**-law.alpha - law.C * s2
    gradient = -law.alpha * law.A * total ** (-law.alpha - 1.0) - law.C * weights
    return value, gradient


def gradient_of(law: CurveLaw) -> Callable[[Array], tuple[float, Array]]:
    if isinstance(law, MultiPowerLaw):
        return lambda lrs: multi_power_gradient(law, lrs)
    return lambda lrs: annealing_gradient(law, lrs)


# --- best WSD decay fraction ------------------------------------------------------------------


def best_decay_fraction(
    law: CurveLaw, problem: ScheduleProblem, shape: DecayShape = "linear"
) -> DecayChoice:
    """The WSD decay fraction in [0, 1] with the lowest final loss: a coarse grid, then a
    bounded scalar search (Brent) between the grid neighbours of its best point."""
    evaluations = 0
    cache: dict[float, float] = {}

    def loss_at(fraction: float) -> float:
        nonlocal evaluations
        if fraction not in cache:
            evaluations += 1
            cache[fraction] = final_loss(law, problem.wsd(fraction, shape))
        return cache[fraction]

    grid = np.linspace(0.0, 1.0, FRACTION_GRID)
    values = np.array([loss_at(float(f)) for f in grid])
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    # The fraction acts through a whole decay-start step: finer than one step is noise.
    found = minimize_scalar(
        loss_at, bounds=(low, high), method="bounded", options={"xatol": 0.5 / problem.total_steps}
    )
    fraction = float(found.x) if loss_at(float(found.x)) < values[best] else float(grid[best])
    return DecayChoice(
        decay_fraction=fraction,
        final_loss=loss_at(fraction),
        lrs=problem.wsd(fraction, shape),
        cosine_final_loss=final_loss(law, problem.cosine()),
        evaluations=evaluations,
        solver="grid+brent",
    )


# --- loss-optimal non-increasing schedule -----------------------------------------------------


def optimal_schedule(
    law: CurveLaw, problem: ScheduleProblem, knots: int = DEFAULT_KNOTS
) -> OptimalSchedule:
    """The loss-optimal non-increasing schedule after the warm-up within [floor, peak]: exact
    for the LR-annealing law (convex), else L-BFGS-B over `knots` knots."""
    if isinstance(law, AnnealingLaw):
        return annealing_optimum(law, problem)
    return knot_optimum(law, problem, knots)


def annealing_optimum(law: AnnealingLaw, problem: ScheduleProblem) -> OptimalSchedule:
    """The exact optimum of the convex LR-annealing problem (module docstring): every switch
    step from peak to floor, then the best rate of the one step at the switch."""
    total, warmup = problem.total_steps, problem.warmup_steps
    peak, floor = problem.peak_lr, problem.floor_lr
    weights = annealing_weights(law, total)[warmup:]  # of the free steps
    warm = problem.warmup()
    warm_area = float(warm.sum())
    warm_s2 = float(np.dot(annealing_weights(law, total)[:warmup], warm))
    # Switch at free step k: peak on steps [0, k), floor on [k, n); k = n keeps the peak.
    n = total - warmup
    k = np.arange(n + 1)
    prefix = np.concatenate([[0.0], np.cumsum(weights)])
    area = warm_area + peak * k + floor * (n - k)
    s2 = warm_s2 + peak * prefix + floor * (prefix[-1] - prefix)
    with np.errstate(divide="ignore"):
        losses = law.L0 + law.A * area**-law.alpha - law.C * s2
    switch = int(np.argmin(np.where(area > 0, losses, np.inf)))
    lrs = np.concatenate([warm, np.full(switch, peak), np.full(n - switch, floor)])
    evaluations = n + 1
    if switch < n:
        # One step may sit between floor and peak (the KKT tie): a convex scalar problem.
        index = warmup + switch

        def at(rate: float) -> float:
            trial = lrs.copy()
            trial[index] = rate
            return annealing_gradient(law, trial)[0]

        found = minimize_scalar(at, bounds=(floor, peak), method="bounded",
                                options={"xatol": 1e-12 * peak})  # fmt: skip
        evaluations += int(found.nfev)
        if at(float(found.x)) < at(floor):
            lrs[index] = float(found.x)
    return OptimalSchedule(
        lrs=lrs,
        final_loss=final_loss(law, lrs),
        cosine_final_loss=final_loss(law, problem.cosine()),
        solver="convex_threshold",
        evaluations=evaluations,
    )


@dataclass(frozen=True)
class KnotCurve:
    """Rates after the warm-up, piecewise linear through knots (fixed positions), with the
    knot values floor + (peak - floor) cumprod(r)."""

    problem: ScheduleProblem
    positions: Array  # knot steps, counted from the end of the warm-up
    floor: float  # the lowest rate explored (>= problem.floor_lr)

    @classmethod
    def of(cls, problem: ScheduleProblem, knots: int) -> KnotCurve:
        free = problem.total_steps - problem.warmup_steps
        count = max(2, min(knots, free)) if free > 1 else 1
        x = np.linspace(0.0, 1.0, count)
        # Half uniform, half ever denser towards the end, where the decay happens.
        spread = 0.5 * (x + 1.0 - (1.0 - x) ** 2)
        positions = np.unique(np.round(spread * (free - 1)))
        floor = max(problem.floor_lr, MIN_RATE_SHARE * problem.peak_lr)
        return cls(problem, positions, floor)

    @property
    def size(self) -> int:
        return int(self.positions.size)

    def _weights(self) -> tuple[np.ndarray, Array]:
        free = self.problem.total_steps - self.problem.warmup_steps
        steps = np.arange(free, dtype=np.float64)
        if self.size == 1:
            return np.zeros(free, dtype=np.intp), np.zeros(free)
        left = np.clip(np.searchsorted(self.positions, steps, side="right") - 1, 0, self.size - 2)
        span = self.positions[left + 1] - self.positions[left]
        return left, (steps - self.positions[left]) / span

    def values(self, ratios: Array) -> Array:
        span = self.problem.peak_lr - self.floor
        return np.asarray(self.floor + span * np.cumprod(ratios), dtype=np.float64)

    def rates(self, ratios: Array) -> Array:
        """The whole per-step schedule, warm-up included."""
        knots = self.values(ratios)
        left, share = self._weights()
        if self.size == 1:
            free = np.full(left.size, knots[0])
        else:
            free = knots[left] * (1.0 - share) + knots[left + 1] * share
            # Interpolating between equal knots can round up by an ulp: keep it non-increasing.
            free = np.minimum.accumulate(np.clip(free, self.floor, self.problem.peak_lr))
        return np.concatenate([self.problem.warmup(), free])

    def ratio_gradient(self, ratios: Array, rate_gradient: Array) -> Array:
        """Chain rule from d/d rate (after the warm-up) to d/d r."""
        left, share = self._weights()
        free = rate_gradient[self.problem.warmup_steps :]
        if self.size == 1:
            knot = np.array([free.sum()])
        else:
            knot = np.bincount(left, free * (1.0 - share), self.size)
            knot += np.bincount(left + 1, free * share, self.size)
        knot *= self.problem.peak_lr - self.floor
        # d q_i / d r_l = prod_{m <= i, m != l} r_m: a reverse recursion, no division by r.
        suffix = np.empty_like(knot)
        running = 0.0
        for i in range(self.size - 1, -1, -1):
            running = knot[i] + (ratios[i + 1] * running if i + 1 < self.size else 0.0)
            suffix[i] = running
        before = np.concatenate([[1.0], np.cumprod(ratios)[:-1]])
        return np.asarray(before * suffix)

    def ratios_for(self, lrs: Array) -> Array:
        """The r that best represent a non-increasing schedule at the knots."""
        at = lrs[self.problem.warmup_steps + self.positions.astype(np.intp)]
        span = self.problem.peak_lr - self.floor
        q = np.clip((at - self.floor) / span, 0.0, 1.0)
        q = np.minimum.accumulate(q)
        previous = np.concatenate([[1.0], q[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(previous > 0, q / previous, 1.0)
        return np.clip(r, 0.0, 1.0)


def knot_optimum(
    law: CurveLaw, problem: ScheduleProblem, knots: int = DEFAULT_KNOTS
) -> OptimalSchedule:
    """L-BFGS-B over the knots' ratios from the best linear WSD and from cosine; the better."""
    curve = KnotCurve.of(problem, knots)
    evaluate = gradient_of(law)
    evaluations = 0
    # The final loss moves by ~1e-2 over the whole search: scale it so the tolerances bite.
    scale = 1e3

    def objective(ratios: Array) -> tuple[float, Array]:
        nonlocal evaluations
        evaluations += 1
        value, rate_gradient = evaluate(curve.rates(ratios))
        return scale * value, scale * curve.ratio_gradient(ratios, rate_gradient)

    wsd_start = best_decay_fraction(law, problem, "linear")
    evaluations += wsd_start.evaluations
    best: tuple[float, Array] | None = None
    for start in (wsd_start.lrs, problem.cosine()):
        found = minimize(
            objective,
            curve.ratios_for(start),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * curve.size,
            options={"maxiter": MAX_ITERATIONS, "ftol": 1e-14, "gtol": 1e-10, "maxcor": 30},
        )
        value = float(found.fun) / scale
        if not math.isfinite(value):
            continue
        if best is None or value < best[0]:
            best = (value, np.asarray(found.x))
    if best is None:
        raise SolverFailed("the schedule search found no finite predicted loss")
    lrs = curve.rates(best[1])
    return OptimalSchedule(
        lrs=lrs,
        final_loss=final_loss(law, lrs),
        cosine_final_loss=wsd_start.cosine_final_loss,
        solver=f"lbfgsb ({curve.size} knots)",
        evaluations=evaluations,
    )
