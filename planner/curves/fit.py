"""Fitting the loss-curve laws to observed training curves, and their prediction errors.

Each curve is a per-step LR schedule plus the loss observed at some of its steps. As Luo et al.
(MultiPowerLaw src/fitting.py, HUBER_DELTA in src/config.py) the objective is the Huber loss
(delta 1e-3) of ln observed - ln predicted, summed over every checkpoint of every curve.

The Multi-Power Law is fitted by default with the authors' procedure (`method="adamw"`): a first
stage fits L0, A, alpha, B of the law without the power in the loss drop (L-BFGS-B; from there
with C, beta, gamma = 1, 0.5, 0.5), then at most 200 AdamW steps with their step sizes, torch's
default weight decay and their early stopping, keeping the best point visited. This is not a
minimiser of the objective, and that matters: on Luo et al.'s curves (fit on constant_24000,
cosine_24000, wsdcon_9; the six other schedules held out) the minimiser, which
`method="minimise"` finds (multistart L-BFGS-B, analytic gradients, bounds), reaches about half
the objective and predicts worse: PredE 0.00137 / 0.00165 for 25M / 100M against the published
0.00110 / 0.00142. The few, fixed-size AdamW steps from a neutral loss-drop shape act as a
regulariser of the weakly identified (C, beta, gamma); the minimiser trades them (beta ~ 0.1-0.25,
gamma ~ 0.9-1.4) for a closer fit of the three training curves.

One deliberate difference from the authors' loop: it records the parameters *after* the AdamW step
whose objective was the lowest, so that the published parameters (which this procedure reproduces
to ~5e-5, see the tests) are one step past the best point, their objective 4.5% / 2% above the
best value the loop reported. Here the point whose objective was measured is kept. This gives
PredE 0.00099 / 0.00134 and WorstE 0.00373 / 0.00573 (published 0.00110 / 0.00142 and 0.00409 /
0.00583), and it is less erratic: from 15 starts perturbed by 1e-4-1e-2 relative, the authors'
post-step point's PredE ranged 0.0009-0.0057 (25M) and 0.0011-0.0038 (100M), the kept best
point's 0.00092-0.00100 and 0.00104-0.00144 (one 100M start above the published 0.00142: the
margin is partly the trajectory's luck, as is the authors' figure). The price: its step sizes
are absolute (set for losses ~3 nats and LRs ~3e-4) and it is a coarse search, ~1e-3 relative on
noise-free curves where the minimiser recovers the law to ~1e-7 (tests/unit/test_multi_power.py).

Errors are the paper's: per curve the mean (PredE) and the maximum (WorstE) of |pred - obs| / obs
over its checkpoints, each averaged over the curves.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeResult, minimize
from threadpoolctl import threadpool_limits

from planner.curves.lr_annealing import (
    DEFAULT_DECAY,
    AnnealingLaw,
    annealing_area,
    annealing_area_and_slope,
    validate_decay,
)
from planner.curves.multi_power import (
    Index,
    MultiPowerLaw,
    PreparedCurve,
    prepare,
    relative_errors,
    validate_steps,
)
from planner.curves.schedules import Array, validate_lrs
from planner.errors import InvalidInput, SolverFailed

DELTA = 1e-3
# Predictions are floored here inside the objective so that its log stays finite; the Huber
# slope then pushes the parameters back.
TINY_LOSS = 1e-6
# The fit's loss-drop grouping (planner.curves.multi_power): its ~1e-7 relative error is far
# below the curves' noise (~1e-3), and it has half the terms of the prediction default.
FIT_RESOLUTION = 16


@dataclass(frozen=True)
class Curve:
    """One training run: its per-step schedule and the loss observed at some steps."""

    lrs: Array
    steps: Index
    loss: Array
    name: str = ""

    @classmethod
    def of(cls, lrs: ArrayLike, steps: ArrayLike, loss: ArrayLike, name: str = "") -> Curve:
        schedule = validate_lrs(lrs, "curve.lrs")
        index = validate_steps(steps, schedule.size, "curve.steps")
        values = np.asarray(loss, dtype=np.float64).ravel()
        if values.size != index.size:
            raise InvalidInput("curve.loss", f"must have one value per step ({index.size})")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise InvalidInput("curve.loss", "must all be finite and > 0")
        if np.any(np.cumsum(schedule)[index] <= 0):
            raise InvalidInput("curve.steps", "a step comes before any training (LR sum 0)")
        return cls(schedule, index, values, name)


class _Predictor(Protocol):
    def predict(self, lrs: ArrayLike, steps: ArrayLike) -> Array: ...


@dataclass(frozen=True)
class CurveErrors:
    name: str
    pred_e: float  # mean relative error over the curve's checkpoints
    worst_e: float  # largest relative error


@dataclass(frozen=True)
class ErrorSummary:
    curves: tuple[CurveErrors, ...]

    @property
    def pred_e(self) -> float:
        """The paper's PredE: per-curve mean relative errors, averaged over the curves."""
        return float(np.mean([c.pred_e for c in self.curves]))

    @property
    def worst_e(self) -> float:
        """The paper's WorstE: per-curve worst relative errors, averaged over the curves."""
        return float(np.mean([c.worst_e for c in self.curves]))


def prediction_errors(law: _Predictor, curves: Sequence[Curve]) -> ErrorSummary:
    """PredE / WorstE of a law's predictions on these curves."""
    if not curves:
        raise InvalidInput("curves", "give at least one curve")
    rows = []
    for curve in curves:
        mean, worst = relative_errors(law.predict(curve.lrs, curve.steps), curve.loss)
        rows.append(CurveErrors(curve.name, mean, worst))
    return ErrorSummary(tuple(rows))


def _dot(a: Array, b: Array) -> float:
    """Sum of a * b without BLAS: a multithreaded ddot on these ~1e5-element arrays spends
    more time synchronising threads than computing, badly so on a loaded machine."""
    return float(np.add.reduce(a * b))


def _huber_and_slope(residual: Array, delta: float) -> tuple[float, Array]:
    clipped = np.clip(residual, -delta, delta)
    return float(np.sum(clipped * (residual - 0.5 * clipped))), clipped


def _minimise(
    objective: Callable[[Array], tuple[float, Array]],
    starts: Sequence[Array],
    bounds: Sequence[tuple[float, float]],
) -> tuple[Array, float, int]:
    """L-BFGS-B from each start; the best finite end point, its value and total evaluations."""
    best_x, best_fun, evaluations = None, math.inf, 0
    # One BLAS thread: L-BFGS-B's tiny LAPACK calls each cost ~0.5 ms of thread hand-off with
    # two OpenBLAS threads (measured: the whole fit 4-9x slower), for no parallel gain.
    with threadpool_limits(limits=1, user_api="blas"):
        for start in starts:
            result = _lbfgsb(objective, start, bounds)
            evaluations += int(result.nfev)
            if np.all(np.isfinite(result.x)) and np.isfinite(result.fun) and result.fun < best_fun:
                best_x, best_fun = np.asarray(result.x), float(result.fun)
    if best_x is None:
        raise SolverFailed("no L-BFGS-B start reached a finite objective")
    return best_x, best_fun, evaluations


def _lbfgsb(
    objective: Callable[[Array], tuple[float, Array]],
    start: Array,
    bounds: Sequence[tuple[float, float]],
) -> OptimizeResult:
    return minimize(
        objective,
        np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds]),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2_000, "ftol": 1e-13, "gtol": 1e-10},
    )


def _require_curves(curves: Sequence[Curve]) -> None:
    if not curves:
        raise InvalidInput("curves", "give at least one curve to fit")
    for curve in curves:
        if not isinstance(curve, Curve):
            raise InvalidInput("curves", "must be Curve values (Curve.of builds them)")


# --- Multi-Power Law -------------------------------------------------------------------------

# Fit coordinates z = (L0, ln A, alpha, ln B, ln C', beta, gamma) with C' = C eta_ref^-gamma and
# eta_ref the largest LR of the curves: the G argument is C' (eta / eta_ref)^-gamma S, so that C'
# and gamma are nearly independent (C and gamma are strongly coupled over the narrow LR range of a
# schedule: the fit stalled along that valley). Logs for the scale parameters so that every
# coordinate moves on a scale of about one.
MPL_BOUNDS = [
    (0.0, math.inf),  # L0, capped below the lowest observed loss at fit time
    (math.log(1e-4), math.log(1e3)),  # ln A
    (1e-3, 3.0),  # alpha
    (math.log(1e-2), math.log(1e5)),  # ln B
    (math.log(1e-3), math.log(1e8)),  # ln C'
    (1e-3, 3.0),  # beta
    (1e-3, 2.0),  # gamma
]
# Second-stage starts for (C, beta, gamma): the authors' (1, 0.5, 0.5) and neighbours.
MPL_SHAPE_STARTS = ((1.0, 0.5, 0.5), (2.0, 0.6, 0.6), (0.5, 0.4, 0.4), (4.0, 0.5, 0.7))

# The authors' AdamW stage (MultiPowerLaw src/fitting.py `mpl_adam_fit` and `generate_init_params`,
# FIT_* in src/config.py), on the natural parameters (L0, A, alpha, B, C, beta, gamma).
MultiPowerMethod = Literal["adamw", "minimise"]
MPL_METHODS: tuple[MultiPowerMethod, ...] = ("adamw", "minimise")
ADAMW_START_SHAPE = (1.0, 0.5, 0.5)  # C, beta, gamma
ADAMW_LR = np.array([5e-2, 5e-2, 5e-3, 5e-2, 5e-2, 5e-3, 5e-3])  # 5e-2 L0, A, B, C; 5e-3 exponents
ADAMW_BETAS = (0.9, 0.999)  # torch.optim.AdamW defaults, which the authors keep
ADAMW_EPS = 1e-8
ADAMW_WEIGHT_DECAY = 1e-2
ADAMW_STEPS = 200
ADAMW_PATIENCE = 20  # stop after this many steps without a lower objective
ADAMW_GRADIENT_STOP = 1e-5  # or once the gradient's norm is below this


@dataclass(frozen=True)
class MultiPowerFit:
    law: MultiPowerLaw
    objective: float  # summed Huber loss at the fit
    evaluations: int  # objective evaluations (of all starts, or of the AdamW steps)
    # With method "minimise", parameters that ended on a search bound (in the fit coordinates: A,
    # alpha, B, C' = C eta_max^-gamma, beta, gamma, or L0 at 0 or at the lowest observed loss): the
    # curves do not pin them down (e.g. beta -> 0 with B beta fixed, where B G tends to
    # B beta ln(1 + C x)). The "adamw" method has no bounds: always empty.
    at_bounds: tuple[str, ...] = ()


class _MultiPowerProblem:
    """The training curves' prepared terms, stacked, and the objective in z."""

    def __init__(
        self,
        prepared: Sequence[PreparedCurve],
        losses: Sequence[Array],
        delta: float,
        log_lr_ref: float,
    ) -> None:
        offsets = np.cumsum([0] + [p.steps.size for p in prepared])
        self.count = int(offsets[-1])
        self.log_area = np.log(np.concatenate([p.total_area for p in prepared]))
        self.log_loss = np.log(np.concatenate(list(losses)))
        rows = np.concatenate(
            [p.terms.rows + o for p, o in zip(prepared, offsets[:-1], strict=True)]
        )
        weight = np.concatenate([p.terms.weight for p in prepared])
        log_lr = np.concatenate([p.terms.log_lr for p in prepared])
        area = np.concatenate([p.terms.area for p in prepared])
        # Steps at LR 0 have a constant G (1 after any further training, else 0): fold them in.
        zero = ~np.isfinite(log_lr)
        self.fixed_drop = np.bincount(
            rows[zero], weights=weight[zero] * (area[zero] > 0), minlength=self.count
        )
        keep = ~zero
        self.rows, self.weight = rows[keep], weight[keep]
        self.log_lr, self.log_area_k = log_lr[keep] - log_lr_ref, np.log(area[keep])
        self.delta = delta

    def objective(self, z: Array) -> tuple[float, Array]:
        L0, log_a, alpha, log_b, log_c, beta, gamma = z  # log_c = ln C'
        A, B = math.exp(log_a), math.exp(log_b)
        power = A * np.exp(-alpha * self.log_area)
        # Cx = exp(ln C' - gamma ln(eta / eta_ref) + ln S): one exp per term.
        cx = np.exp(log_c - gamma * self.log_lr + self.log_area_k)
        log_u = np.log1p(cx)
        v = np.exp(-beta * log_u)  # (1 + Cx)^-beta
        drop = np.asarray(
            np.bincount(self.rows, weights=self.weight * (1.0 - v), minlength=self.count),
            dtype=np.float64,
        )
        drop += self.fixed_drop
        pred = L0 + power - B * drop
        safe = np.maximum(pred, TINY_LOSS)
        value, slope = _huber_and_slope(self.log_loss - np.log(safe), self.delta)
        q = -slope / safe  # d objective / d pred, per row
        c = -B * q[self.rows] * self.weight  # d objective / d G, per term
        k = beta * v * cx / (1.0 + cx)  # dG / d ln C'; dG / d gamma = -ln(eta / eta_ref) k
        gradient = np.array(
            [
                q.sum(),
                _dot(q, power),
                -_dot(q, power * self.log_area),
                -B * _dot(q, drop),
                _dot(c, k),
                _dot(c, v * log_u),
                -_dot(c, k * self.log_lr),
            ]
        )
        return value, gradient


def _simple_stage(curves: Sequence[Curve], delta: float, l0_cap: float) -> Array:
    """The authors' first stage: L0 + A S^-alpha - B (eta_max - eta_t) fitted alone, from a
    small grid; a cheap start for (L0, A, alpha, B)."""
    log_area = np.log(np.concatenate([np.cumsum(c.lrs)[c.steps] for c in curves]))
    gap = np.concatenate([c.lrs.max() - c.lrs[c.steps] for c in curves])
    log_loss = np.log(np.concatenate([c.loss for c in curves]))

    def objective(z: Array) -> tuple[float, Array]:
        L0, log_a, alpha, log_b = z
        power = math.exp(log_a) * np.exp(-alpha * log_area)
        drop = math.exp(log_b) * gap
        pred = np.maximum(L0 + power - drop, TINY_LOSS)
        value, slope = _huber_and_slope(log_loss - np.log(pred), delta)
        q = -slope / pred
        return value, np.array(
            [q.sum(), _dot(q, power), -_dot(q, power * log_area), -_dot(q, drop)]
        )

    lowest = float(np.exp(log_loss.min()))
    starts = [
        np.array([lowest * f, math.log(a), alpha, math.log(b)])
        for f, a, alpha, b in itertools.product((0.8, 0.95), (0.3, 1.0), (0.3, 0.6), (100, 1000))
    ]
    bounds = [(0.0, l0_cap), MPL_BOUNDS[1], MPL_BOUNDS[2], MPL_BOUNDS[3]]
    best, _, _ = _minimise(objective, starts, bounds)
    return best


def fit_multi_power(
    curves: Sequence[Curve],
    delta: float = DELTA,
    resolution: int | None = FIT_RESOLUTION,
    start: MultiPowerLaw | None = None,
    method: MultiPowerMethod = "adamw",
) -> MultiPowerFit:
    """Fit the Multi-Power Law to one or more curves (Huber on log loss).

    `method` "adamw" (default): the authors' procedure, first stage then early-stopped AdamW,
    keeping the best point visited (module docstring); with `start` the AdamW steps begin there
    instead. "minimise": multistart L-BFGS-B to a minimiser of the objective, `start` being one
    more start. `resolution` is the loss-drop grouping of planner.curves.multi_power (None:
    exact sums)."""
    _require_curves(curves)
    delta = _positive_delta(delta)
    if method not in MPL_METHODS:
        raise InvalidInput("method", f"expected one of {MPL_METHODS}, got {method!r}")
    log_lr_ref = math.log(max(float(c.lrs.max()) for c in curves))
    prepared = [prepare(c.lrs, c.steps, resolution) for c in curves]
    problem = _MultiPowerProblem(prepared, [c.loss for c in curves], delta, log_lr_ref)
    l0_cap = float(min(c.loss.min() for c in curves))
    if method == "adamw":
        if start is None:
            L0, log_a, alpha, log_b = _simple_stage(curves, delta, l0_cap)
            p0 = np.array([L0, math.exp(log_a), alpha, math.exp(log_b), *ADAMW_START_SHAPE])
        else:
            p0 = np.array([getattr(start, name) for name in MultiPowerLaw.NAMES], dtype=float)
        run = _adamw(problem, p0, log_lr_ref)
        law = MultiPowerLaw(*(float(v) for v in run.best))
        return MultiPowerFit(law, run.value, run.evaluations)
    bounds = [(0.0, l0_cap), *MPL_BOUNDS[1:]]
    first = _simple_stage(curves, delta, l0_cap)
    starts = [
        np.array([*first, math.log(c) - gamma * log_lr_ref, beta, gamma])
        for c, beta, gamma in MPL_SHAPE_STARTS
    ]
    if start is not None:
        starts.insert(0, _mpl_coordinates(start, log_lr_ref))
    z, value, evaluations = _minimise(problem.objective, starts, bounds)
    names = ("L0", "A", "alpha", "B", "C'", "beta", "gamma")
    at_bounds = tuple(
        name
        for name, value_z, (low, high) in zip(names, z, bounds, strict=True)
        if np.isclose(value_z, low, rtol=0, atol=1e-6)
        or np.isclose(value_z, high, rtol=0, atol=1e-6)
    )
    return MultiPowerFit(_mpl_law(z, log_lr_ref), value, evaluations, at_bounds)


def _natural_objective(
    problem: _MultiPowerProblem, p: Array, log_lr_ref: float
) -> tuple[float, Array | None]:
    """The objective and its gradient in the natural parameters (L0, A, alpha, B, C, beta,
    gamma); (inf, None) where the law is undefined (a non-finite or a non-positive parameter
    other than L0, where the authors' loop meets NaN)."""
    L0, A, alpha, B, C, beta, gamma = (float(v) for v in p)
    if not np.all(np.isfinite(p)) or min(A, alpha, B, C, beta, gamma) <= 0:
        return math.inf, None
    z = np.array(
        [L0, math.log(A), alpha, math.log(B), math.log(C) - gamma * log_lr_ref, beta, gamma]
    )
    value, g = problem.objective(z)
    # z = (L0, ln A, alpha, ln B, ln C - gamma ln eta_ref, beta, gamma): the chain rule.
    gradient = np.array([g[0], g[1] / A, g[2], g[3] / B, g[4] / C, g[5], g[6] - log_lr_ref * g[4]])
    if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
        return math.inf, None
    return value, gradient


@dataclass(frozen=True)
class _AdamwResult:
    best: Array  # the visited point of lowest objective
    value: float  # its objective
    evaluations: int
    after_best: Array  # the point one step later: what the authors' loop returns


def _adamw(problem: _MultiPowerProblem, p0: Array, log_lr_ref: float) -> _AdamwResult:
    """The authors' AdamW loop (torch.optim.AdamW's update: decoupled weight decay, bias-corrected
    moments) with their stopping rules, in the natural parameters."""
    p = np.array(p0, dtype=np.float64)
    first, second = np.zeros_like(p), np.zeros_like(p)
    beta1, beta2 = ADAMW_BETAS
    best_p, best_value, since_best, evaluations = None, math.inf, 0, 0
    after_best = p.copy()
    with threadpool_limits(limits=1, user_api="blas"):
        for step in range(ADAMW_STEPS):
            value, gradient = _natural_objective(problem, p, log_lr_ref)
            evaluations += 1
            if gradient is None:
                break
            if value < best_value:
                best_p, best_value, since_best = p.copy(), value, 0
            else:
                since_best += 1
            if step > ADAMW_PATIENCE and since_best >= ADAMW_PATIENCE:
                break
            if float(np.sqrt(_dot(gradient, gradient))) < ADAMW_GRADIENT_STOP:
                break
            t = step + 1
            p *= 1.0 - ADAMW_LR * ADAMW_WEIGHT_DECAY
            first = beta1 * first + (1.0 - beta1) * gradient
            second = beta2 * second + (1.0 - beta2) * gradient * gradient
            denominator = np.sqrt(second) / math.sqrt(1.0 - beta2**t) + ADAMW_EPS
            p -= ADAMW_LR * (first / (1.0 - beta1**t)) / denominator
            if since_best == 0:
                after_best = p.copy()
    if best_p is None:
        raise SolverFailed("the AdamW fit started where the Multi-Power Law is undefined")
    return _AdamwResult(best_p, best_value, evaluations, after_best)


def _mpl_coordinates(law: MultiPowerLaw, log_lr_ref: float) -> Array:
    return np.array(
        [
            law.L0,
            math.log(max(law.A, 1e-12)),
            law.alpha,
            math.log(max(law.B, 1e-12)),
            math.log(law.C) - law.gamma * log_lr_ref,
            law.beta,
            law.gamma,
        ]
    )


def _mpl_law(z: Array, log_lr_ref: float) -> MultiPowerLaw:
    L0, log_a, alpha, log_b, log_c, beta, gamma = (float(v) for v in z)
    return MultiPowerLaw(
        L0=L0,
        A=math.exp(log_a),
        alpha=alpha,
        B=math.exp(log_b),
        C=math.exp(log_c + gamma * log_lr_ref),
        beta=beta,
        gamma=gamma,
    )


def _positive_delta(delta: float) -> float:
    if not (isinstance(delta, int | float) and math.isfinite(delta) and delta > 0):
        raise InvalidInput("delta", f"must be a finite number > 0, got {delta!r}")
    return float(delta)


# --- LR-annealing law ------------------------------------------------------------------------

# z = (L0, ln A, alpha, C[, lambda]).
ANNEALING_BOUNDS = [
    (0.0, math.inf),
    (math.log(1e-4), math.log(1e3)),
    (1e-3, 3.0),
    (-1e3, 1e3),
]
DECAY_BOUNDS = (0.9, 0.99999)
DECAY_STARTS = (0.99, 0.995, 0.999, 0.9995)


@dataclass(frozen=True)
class AnnealingFit:
    law: AnnealingLaw
    objective: float
    evaluations: int


def fit_lr_annealing(
    curves: Sequence[Curve],
    delta: float = DELTA,
    decay: float = DEFAULT_DECAY,
    fit_decay: bool = False,
) -> AnnealingFit:
    """Fit the LR-annealing law (Huber on log loss, multistart L-BFGS-B) with the momentum decay
    lambda fixed at `decay`; with `fit_decay`, then free lambda (within DECAY_BOUNDS) from that
    fit's end point."""
    _require_curves(curves)
    delta = _positive_delta(delta)
    decay = validate_decay(decay)
    log_area = np.log(np.concatenate([np.cumsum(c.lrs)[c.steps] for c in curves]))
    log_loss = np.log(np.concatenate([c.loss for c in curves]))
    lowest = float(np.exp(log_loss.min()))

    def objective(z: Array, s2: Array) -> tuple[float, Array, Array]:
        """The value, the gradient in (L0, ln A, alpha, C) and d objective / d pred."""
        L0, log_a, alpha, C = z[:4]
        power = math.exp(log_a) * np.exp(-alpha * log_area)
        pred = np.maximum(L0 + power - C * s2, TINY_LOSS)
        value, slope = _huber_and_slope(log_loss - np.log(pred), delta)
        q = -slope / pred
        gradient = [q.sum(), _dot(q, power), -_dot(q, power * log_area), -_dot(q, s2)]
        return value, np.array(gradient), q

    fixed_s2 = np.concatenate([annealing_area(c.lrs, decay)[c.steps] for c in curves])

    def fixed(z: Array) -> tuple[float, Array]:
        value, gradient, _ = objective(z, fixed_s2)
        return value, gradient

    def free(z: Array) -> tuple[float, Array]:
        # z[4] = ln(1 - lambda): lambda's useful range (0.9 .. 0.99999) spans decades of 1 - lambda.
        lam = -math.expm1(float(z[4]))
        pairs = [annealing_area_and_slope(c.lrs, lam) for c in curves]
        s2 = np.concatenate([s[c.steps] for (s, _), c in zip(pairs, curves, strict=True)])
        ds2 = np.concatenate([d[c.steps] for (_, d), c in zip(pairs, curves, strict=True)])
        value, gradient, q = objective(z, s2)
        return value, np.append(gradient, -z[3] * _dot(q, ds2) * (lam - 1.0))

    bounds = [(0.0, lowest), *ANNEALING_BOUNDS[1:]]
    starts = [
        np.array([lowest * f, math.log(a), alpha, c])
        for f, a, alpha, c in itertools.product((0.8, 0.95), (0.3, 1.0), (0.3, 0.6), (0.1, 1.0))
    ]
    z, value, evaluations = _minimise(fixed, starts, bounds)
    lam = decay
    if fit_decay:
        # S2's dependence on lambda is not convex: start from several decays.
        starts = [np.append(z, math.log1p(-d)) for d in dict.fromkeys((decay, *DECAY_STARTS))]
        log_bounds = (math.log1p(-DECAY_BOUNDS[1]), math.log1p(-DECAY_BOUNDS[0]))
        z, value, more = _minimise(free, starts, [*bounds, log_bounds])
        evaluations += more
        lam = -math.expm1(float(z[4]))
    law = AnnealingLaw(
        L0=float(z[0]), A=math.exp(float(z[1])), alpha=float(z[2]), C=float(z[3]), decay=lam
    )
    return AnnealingFit(law, value, evaluations)
