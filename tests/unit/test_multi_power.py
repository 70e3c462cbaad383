"""Multi-Power Law (Luo et al., ICLR 2025, arXiv 2503.12811): prediction and fit.

Published figures (shared data README; thu-yao-01-luo/MultiPowerLaw README): fitted on
constant_24000, cosine_24000 and wsdcon_9, the law predicts the six other schedules with mean
relative error PredE 0.00110 (25M) / 0.00142 (100M) and mean worst relative error WorstE
0.00409 / 0.00583, with parameters (L0, A, alpha, B, C, beta, gamma) printed to three decimals.
The same parameters at full precision are the authors' `PARAMS` in src/config.py of their code
(read from a fork of it, Morphorxz/dlt25-final @1cae74d); they round to the printed ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import approx_fprime

from planner.curves import Curve, MultiPowerLaw, fit_multi_power, prediction_errors, schedules
from planner.curves.fit import (
    _adamw,
    _mpl_coordinates,
    _MultiPowerProblem,
    _natural_objective,
    _simple_stage,
)
from planner.curves.multi_power import prepare
from planner.errors import InvalidInput
from tests.unit.test_schedules import published_schedule, read_curve

TRAIN = ("constant_24000", "cosine_24000", "wsdcon_9")
TEST = (
    "constant_72000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_18",
)
PRINTED = {
    "25M": (3.040, 0.525, 0.508, 363.788, 2.066, 0.583, 0.641),
    "100M": (2.651, 0.601, 0.453, 437.946, 2.132, 0.598, 0.655),
}
FULL = {
    "25M": (3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257),
    "100M": (2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644),
}
PUBLISHED_ERRORS = {"25M": (0.00110, 0.00409), "100M": (0.00142, 0.00583)}


def load_published(root: Path, size: str, names: tuple[str, ...]) -> list[Curve]:
    curves = []
    for name in names:
        steps, _, loss = read_curve(root, size, name)
        curves.append(Curve.of(published_schedule(name), steps, loss, name))
    return curves


def three_figures(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_authors_parameters_reproduce_their_errors(shared_data: Path, size: str) -> None:
    """At full precision, PredE and WorstE match the published ones to 3 significant figures,
    with every checkpoint of the CSVs evaluated (none skipped) and the warm-up inside LD."""
    assert tuple(round(v, 3) for v in FULL[size]) == PRINTED[size]
    curves = load_published(shared_data, size, TEST)
    law = MultiPowerLaw(*FULL[size])
    exact = prediction_errors(_Exact(law), curves)
    assert (three_figures(exact.pred_e), three_figures(exact.worst_e)) == PUBLISHED_ERRORS[size]
    # The default (grouped) evaluation agrees to ~2e-8. That can still flip the third figure:
    # the exact 25M WorstE is 0.0040949853, just under the rounding boundary 0.004095.
    grouped = prediction_errors(law, curves)
    assert grouped.pred_e == pytest.approx(exact.pred_e, abs=1e-7)
    assert grouped.worst_e == pytest.approx(exact.worst_e, abs=1e-7)


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_printed_parameters_miss_by_their_rounding(shared_data: Path, size: str) -> None:
    """The three-decimal parameters do not reproduce the figures to 3 significant figures:
    25M gives PredE 0.00115 / WorstE 0.00414, 100M 0.00156 / 0.00595. Rounding L0 alone (by
    4.5e-4 in both, ~1.5e-4 of the loss) accounts for almost all of it."""
    curves = load_published(shared_data, size, TEST)
    printed = prediction_errors(MultiPowerLaw(*PRINTED[size]), curves)
    pred_e, worst_e = PUBLISHED_ERRORS[size]
    assert pred_e < printed.pred_e < 1.15 * pred_e
    assert worst_e < printed.worst_e < 1.05 * worst_e
    only_l0 = MultiPowerLaw(PRINTED[size][0], *FULL[size][1:])
    assert prediction_errors(only_l0, curves).pred_e > 0.9 * printed.pred_e


class _Exact:
    def __init__(self, law: MultiPowerLaw) -> None:
        self.law = law

    def predict(self, lrs: ArrayLike, steps: ArrayLike) -> NDArray[np.float64]:
        return self.law.predict(lrs, steps, resolution=None)


def slow_reference(law: MultiPowerLaw, lrs: list[float], t: int) -> float:
    """The formula as printed, one term at a time: S1 + S_W = eta_0 + ... + eta_t and
    LD = B sum_{k=1..t} (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t)), a zero LR taking G's limit."""
    total = math.fsum(lrs[: t + 1])
    drop = []
    for k in range(1, t + 1):
        s_k = math.fsum(lrs[k : t + 1])
        if lrs[k] == 0.0:
            g = 1.0 if s_k > 0 else 0.0
        else:
            g = 1.0 - (law.C * lrs[k] ** -law.gamma * s_k + 1.0) ** -law.beta
        drop.append((lrs[k - 1] - lrs[k]) * g)
    return float(law.L0 + law.A * total**-law.alpha - law.B * math.fsum(drop))


def short_schedule() -> np.ndarray:
    """Warm-up, cosine, a jump down, a re-warm-up, a zero-LR stretch and a restart: 700 steps."""
    lrs = schedules.cosine(400, 3e-4, 3e-5, warmup_steps=40)
    jump = np.full(100, 1e-5)
    rewarm = np.linspace(1e-5, 2e-4, 100)
    return np.concatenate([lrs, jump, rewarm, np.zeros(20), np.full(80, 5e-5)])


def test_vectorised_prediction_matches_the_double_loop() -> None:
    law = MultiPowerLaw(*FULL["25M"])
    lrs = short_schedule()
    steps = np.array([1, 2, 39, 40, 41, 100, 399, 400, 450, 499, 555, 610, 615, 619, 620, 650, 699])
    reference = np.array([slow_reference(law, lrs.tolist(), int(t)) for t in steps])
    exact = law.predict(lrs, steps, resolution=None)
    np.testing.assert_allclose(exact, reference, rtol=1e-10, atol=0)
    # Grouped terms (default, and coarse): second order in 1 / resolution.
    np.testing.assert_allclose(law.predict(lrs, steps), reference, rtol=1e-6, atol=0)
    np.testing.assert_allclose(law.predict(lrs, steps, resolution=4), reference, rtol=1e-4, atol=0)
    # One step at a time gives the same as all at once.
    single = [law.predict(lrs, [t])[0] for t in steps]
    np.testing.assert_allclose(single, law.predict(lrs, steps), rtol=1e-13, atol=0)


def test_grouping_error_on_a_long_schedule() -> None:
    """1,000 points of a 100,000-step cosine: grouped vs exact (measured ~3e-8 at the default,
    ~4e-7 at resolution 8)."""
    law = MultiPowerLaw(*FULL["100M"])
    lrs = schedules.cosine(100_000, 3e-4, 3e-5, warmup_steps=2160)
    steps = np.linspace(1, 99_999, 1000).astype(int)
    exact = law.predict(lrs, steps, resolution=None)
    error = np.abs(law.predict(lrs, steps) / exact - 1)
    assert error.max() < 1e-6
    assert np.abs(law.predict(lrs, steps, resolution=8) / exact - 1).max() < 1e-5


def test_constant_lr_has_no_loss_drop_and_is_a_power_law() -> None:
    law = MultiPowerLaw(*FULL["25M"])
    lrs = np.full(5000, 2e-4)
    steps = np.array([0, 10, 4999])
    expected = law.L0 + law.A * (2e-4 * (steps + 1)) ** -law.alpha
    np.testing.assert_allclose(law.predict(lrs, steps), expected, rtol=1e-13)


LOG_LR_MAX = math.log(3e-4)


def training_problem(train: list[Curve]) -> _MultiPowerProblem:
    """The fit's objective on these curves (Huber delta 1e-3, grouping 16)."""
    return _MultiPowerProblem(
        [prepare(c.lrs, c.steps, 16) for c in train], [c.loss for c in train], 1e-3, LOG_LR_MAX
    )


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_fit_on_three_schedules_predicts_the_other_six(shared_data: Path, size: str) -> None:
    """The default fit (the authors' first stage then early-stopped AdamW, keeping the best point
    visited; planner.curves.fit) predicts the six held-out schedules at least as well as published.

    Measured: 25M PredE 0.000994 / WorstE 0.00373, 100M 0.001338 / 0.00573, against the published
    0.00110 / 0.00409 and 0.00142 / 0.00583 (margins 10%, 6%, 9%, 1.8%). The published parameters
    are the point one AdamW step after ours (next test); the step overshoots, and their objective
    is 4.5% / 2% above ours. The procedure was chosen as the authors' own, with that one
    correction; the held-out numbers of every variant tried are in the module docstring of
    planner.curves.fit and below (test_the_minimiser_fits_better_and_predicts_worse).
    """
    train = load_published(shared_data, size, TRAIN)
    fit = fit_multi_power(train)
    assert fit.at_bounds == ()
    published = MultiPowerLaw(*FULL[size])
    theirs, _ = training_problem(train).objective(_mpl_coordinates(published, LOG_LR_MAX))
    assert fit.objective < theirs
    errors = prediction_errors(fit.law, load_published(shared_data, size, TEST))
    pred_e, worst_e = PUBLISHED_ERRORS[size]
    assert errors.pred_e <= pred_e
    assert errors.worst_e <= worst_e
    # On the training curves themselves: 0.00101 / 0.00103, the published parameters' 0.00105 /
    # 0.00108 (the minimiser's: 0.00062 / 0.00023).
    assert prediction_errors(fit.law, train).pred_e < prediction_errors(published, train).pred_e


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_the_authors_loop_reproduces_their_parameters(shared_data: Path, size: str) -> None:
    """The point the authors' loop returns (one AdamW step after the best one it measured, as
    their `mpl_adam_fit` records it) is their published parameters (src/config.py PARAMS) to
    ~5e-5 relative (C; the rest ~1e-5): what remains is their exact loss-drop sums, float32
    losses and finite-difference first stage. So the procedure is theirs, step for step."""
    train = load_published(shared_data, size, TRAIN)
    first = _simple_stage(train, 1e-3, float(min(c.loss.min() for c in train)))
    start = np.array([first[0], math.exp(first[1]), first[2], math.exp(first[3]), 1.0, 0.5, 0.5])
    run = _adamw(training_problem(train), start, LOG_LR_MAX)
    np.testing.assert_allclose(run.after_best, FULL[size], rtol=2e-4)
    assert not np.allclose(run.best, FULL[size], rtol=2e-4)
    # Their point predicts as published (to the 3 printed figures), ours better.
    test = load_published(shared_data, size, TEST)
    authors = prediction_errors(MultiPowerLaw(*run.after_best), test)
    assert three_figures(authors.pred_e) == PUBLISHED_ERRORS[size][0]
    assert prediction_errors(MultiPowerLaw(*run.best), test).pred_e < authors.pred_e


@pytest.mark.parametrize("size", ["25M", "100M"])
def test_the_minimiser_fits_better_and_predicts_worse(shared_data: Path, size: str) -> None:
    """`method="minimise"` (multistart L-BFGS-B to convergence on the same objective) reaches
    half the objective or less (25M 1.38e-4, 100M 2.13e-5 against 2.79e-4 / 2.75e-4) and misses
    the published PredE: measured 0.00137 / 0.00165 (WorstE 0.00360 / 0.00505, better than
    published). It ends at another loss-drop shape (beta 0.11 / 0.24, gamma 0.90 / 1.36 against
    ~0.58, ~0.64): the three training curves pin (C, beta, gamma) down poorly, and the minimiser
    trades them for the training fit. Other variants of it, PredE / WorstE on the held-out six
    (25M; 100M): Huber delta 1e-4 0.00133 / 0.00444, 0.00163 / 0.00498; delta 1e-2 (least
    squares) 0.00142 / 0.00304, 0.00164 / 0.00506; only checkpoints from step 4,000 0.00170 /
    0.0133, 0.00165 / 0.00504; from 8,000 0.00178 / 0.0135, 0.00185 / 0.00491. None meets the
    published PredE."""
    train = load_published(shared_data, size, TRAIN)
    test = load_published(shared_data, size, TEST)
    default = fit_multi_power(train)
    minimiser = fit_multi_power(train, method="minimise")
    assert minimiser.objective < 0.6 * default.objective
    pred_e, worst_e = PUBLISHED_ERRORS[size]
    errors = prediction_errors(minimiser.law, test)
    assert errors.pred_e > pred_e > prediction_errors(default.law, test).pred_e
    assert errors.worst_e <= worst_e


@pytest.mark.parametrize(("method", "tolerance"), [("minimise", 1e-4), ("adamw", 2e-3)])
def test_fit_recovers_a_noise_free_law(method: str, tolerance: float) -> None:
    """Curves generated by known parameters on three schedules: the fit predicts two others
    (a longer cosine, a WSD) whatever the (weakly identified) parameters: the minimiser to 1e-4
    relative (measured 2e-7), the AdamW procedure, whose fixed step sizes (5e-2 on L0, A, B, C)
    make it a coarse search, to 2e-3 (measured 9.6e-4, about the noise of real curves)."""
    truth = MultiPowerLaw(*FULL["25M"])
    steps = np.arange(2200, 20_000, 200)
    train = []
    for lrs in (
        schedules.constant(20_000, 3e-4, warmup_steps=2000),
        schedules.cosine(20_000, 3e-4, 3e-5, warmup_steps=2000),
        schedules.two_stage(20_000, 3e-4, 5e-5, 10_000, warmup_steps=2000),
    ):
        train.append(Curve.of(lrs, steps, truth.predict(lrs, steps, resolution=None)))
    fit = fit_multi_power(train, method=method)  # type: ignore[arg-type]
    for lrs in (
        schedules.cosine(40_000, 3e-4, 3e-5, warmup_steps=2000),
        schedules.wsd(20_000, 3e-4, 3e-5, 2000, decay_fraction=0.2, shape="linear"),
    ):
        far = np.arange(2200, lrs.size, 500)
        expected = truth.predict(lrs, far, resolution=None)
        np.testing.assert_allclose(fit.law.predict(lrs, far), expected, rtol=tolerance)


def test_natural_gradient_matches_finite_differences(shared_data: Path) -> None:
    """The AdamW steps' gradient in (L0, A, alpha, B, C, beta, gamma), by the chain rule."""
    problem = training_problem(load_published(shared_data, "25M", TRAIN))
    for params in (FULL["25M"], FULL["100M"]):
        p = np.array(params)
        _, gradient = _natural_objective(problem, p, LOG_LR_MAX)
        assert gradient is not None
        step = 1e-7 * np.maximum(np.abs(p), 1.0)
        numeric = [
            (
                _natural_objective(problem, p + step[i] * np.eye(7)[i], LOG_LR_MAX)[0]
                - _natural_objective(problem, p - step[i] * np.eye(7)[i], LOG_LR_MAX)[0]
            )
            / (2 * step[i])
            for i in range(7)
        ]
        np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-9)
    # Where the law is undefined the loop stops.
    assert _natural_objective(problem, np.array([3.0, -0.5, 0.5, 300, 2, 0.5, 0.6]), 0.0)[1] is None


def test_analytic_gradient_matches_finite_differences(shared_data: Path) -> None:
    train = load_published(shared_data, "25M", TRAIN)
    log_lr_max = math.log(3e-4)
    problem = _MultiPowerProblem(
        [prepare(c.lrs, c.steps, 16) for c in train], [c.loss for c in train], 1e-3, log_lr_max
    )
    for params in (FULL["25M"], FULL["100M"]):
        z = _mpl_coordinates(MultiPowerLaw(*params), log_lr_max)
        _, gradient = problem.objective(z)
        numeric = approx_fprime(z, lambda x: problem.objective(x)[0], 1e-7)
        np.testing.assert_allclose(gradient, numeric, rtol=2e-3, atol=1e-9)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: MultiPowerLaw(3.0, 0.5, -0.5, 300.0, 2.0, 0.5, 0.6), "parameters.alpha"),
        (lambda: MultiPowerLaw(math.nan, 0.5, 0.5, 300.0, 2.0, 0.5, 0.6), "parameters.L0"),
        (lambda: MultiPowerLaw(3.0, 0.5, 0.5, -1.0, 2.0, 0.5, 0.6), "parameters.B"),
        (lambda: MultiPowerLaw(3.0, 0.5, 0.5, 300.0, 0.0, 0.5, 0.6), "parameters.C"),
        (lambda: MultiPowerLaw(3.0, 0.5, 0.5, 300.0, 2.0, 0.5, math.inf), "parameters.gamma"),
        (lambda: MultiPowerLaw.from_mapping({"L0": 3.0}), "parameters.A"),
        (lambda: MultiPowerLaw.from_mapping({"L0": 3.0, "D": 1.0}), "parameters.D"),
        (lambda: _law().predict([1e-3, math.nan], [1]), "lrs"),
        (lambda: _law().predict([1e-3, -1e-3], [1]), "lrs"),
        (lambda: _law().predict([1e-3, 1e-3], [2]), "steps"),
        (lambda: _law().predict([1e-3, 1e-3], [-1]), "steps"),
        (lambda: _law().predict([1e-3, 1e-3], [0.5]), "steps"),
        (lambda: _law().predict([1e-3, 1e-3], []), "steps"),
        (lambda: _law().predict([0.0, 1e-3], [0]), "steps"),  # nothing trained yet
        (lambda: _law().predict([1e-3, 1e-3], [1], resolution=0), "resolution"),
        (lambda: Curve.of([1e-3, 1e-3], [0, 1], [3.0]), "curve.loss"),
        (lambda: Curve.of([1e-3, 1e-3], [0, 1], [3.0, -1.0]), "curve.loss"),
        (lambda: Curve.of([1e-3, 1e-3], [0, 2], [3.0, 2.9]), "curve.steps"),
        (lambda: fit_multi_power([]), "curves"),
        (lambda: fit_multi_power([_curve()], delta=0.0), "delta"),
        (lambda: fit_multi_power([_curve()], method="lbfgs"), "method"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_names_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field


def _law() -> MultiPowerLaw:
    return MultiPowerLaw(*FULL["25M"])


def _curve() -> Curve:
    return Curve.of(np.full(10, 1e-3), [5, 9], [3.0, 2.9])
