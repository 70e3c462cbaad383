"""Loss intervals of every stored form: the band of the law against a loop over the rows with
the law classes' own predict, and the prediction interval of a new run against a Monte Carlo
sample drawn here."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import Infeasible, InvalidInput
from planner.laws import parse_law, predict_loss
from planner.laws.bnsl_forms import columns as bnsl_columns
from planner.uncertainty import (
    BAND_OF_LAW,
    ENSEMBLE_COLUMNS,
    PREDICTION,
    chinchilla_rows,
    law_loss_interval,
    loss_interval,
)

N, D, U = 6.34e9, 242e9, 25e9
CENTRES: dict[str, dict[str, float]] = {
    "chinchilla": {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
    "sparse_avg_params": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "data_constrained": {
        "E": 1.869,
        "A": 520.8,
        "B": 1487.7,
        "alpha": 0.3527,
        "beta": 0.3527,
        "r_d_star": 15.39,
        "r_n_star": 5.31,
    },
    "overtraining": {"E": 1.5083, "a": 141.2772, "b": 189.5155, "eta": 0.12124},
    # Break locations near each form's x at (N, D), so the breaks matter to the answer.
    "bnsl_compute": {"a": 1.7, "b": 60.0, "c0": 0.05, "c1": 0.1, "d1": 1e21, "f1": 0.5},
    "bnsl_params": {"a": 1.7, "b": 30.0, "c0": 0.1, "c1": 0.2, "d1": 5e9, "f1": 0.3},
    "bnsl_tokens": {
        "a": 1.7,
        "b": 30.0,
        "c0": 0.1,
        "c1": 0.1,
        "d1": 1e10,
        "f1": 0.3,
        "c2": 0.05,
        "d2": 1e12,
        "f2": 1.0,
    },
}


def column_names(form: str) -> tuple[str, ...]:
    if form.startswith("bnsl_"):
        return bnsl_columns((len(CENTRES[form]) - 3) // 3)
    return ENSEMBLE_COLUMNS[form]


def ensemble(form: str, rows: int = 83, seed: int = 0) -> np.ndarray:
    """Rows scattered a few percent around the centre (signs kept: every row a valid law).
    83 rows: 2.5% of them is no whole number, so with little noise the mixture's quantile is
    not on a flat stretch of its CDF (where any value in a gap between rows would do)."""
    centre = np.array([CENTRES[form][name] for name in column_names(form)])
    noise = np.random.default_rng(seed).normal(scale=0.03, size=(rows, centre.size))
    return centre * np.exp(noise)


def row_predictions(form: str, rows: np.ndarray, unique: float | None) -> np.ndarray:
    """Brute force: each row parsed as a law of the form, predicted with its own class."""
    extra = {"k": 6.0} if form == "bnsl_compute" else {}
    names = column_names(form)
    return np.array(
        [
            predict_loss(
                parse_law(form, {**dict(zip(names, map(float, row), strict=True)), **extra}),
                N,
                D,
                unique,
            )
            for row in rows
        ]
    )


@pytest.mark.parametrize(
    ("form", "unique"),
    [(form, None) for form in CENTRES] + [("data_constrained", U)],
)
def test_band_matches_a_loop_over_rows(form: str, unique: float | None) -> None:
    rows = ensemble(form)
    expected = np.percentile(row_predictions(form, rows, unique), [2.5, 97.5])
    interval = loss_interval(form, rows, N, D, unique, k=6.0)
    assert interval is not None and interval.kind == BAND_OF_LAW
    assert (interval.low, interval.high) == pytest.approx(tuple(expected), rel=1e-12)
    assert interval.low < interval.high


def monte_carlo(losses: np.ndarray, residual_sd: float, draws: int = 40_000) -> np.ndarray:
    """A new run: a row drawn uniformly (here: each row equally often), times exp(N(0, s^2))."""
    noise = np.random.default_rng(11).normal(scale=residual_sd, size=(losses.size, draws))
    return np.asarray(np.percentile(losses[:, None] * np.exp(noise), [2.5, 97.5]))


@pytest.mark.parametrize(
    ("form", "unique", "residual_sd"),
    [
        ("chinchilla", None, 0.01),
        ("chinchilla", None, 0.001),  # narrower than the band: the band dominates
        ("data_constrained", U, 0.02),
        ("overtraining", None, 0.01),
        ("bnsl_tokens", None, 0.03),
        ("bnsl_compute", None, 0.005),
    ],
)
def test_prediction_interval_matches_monte_carlo(
    form: str, unique: float | None, residual_sd: float
) -> None:
    rows = ensemble(form)
    losses = row_predictions(form, rows, unique)
    interval = loss_interval(form, rows, N, D, unique, residual_sd, k=6.0)
    assert interval is not None and interval.kind == PREDICTION
    assert (interval.low, interval.high) == pytest.approx(
        tuple(monte_carlo(losses, residual_sd)), rel=2e-3
    )
    band = loss_interval(form, rows, N, D, unique, k=6.0)
    assert band is not None and interval.low < band.low and band.high < interval.high


def test_prediction_interval_of_a_tight_ensemble_is_the_noise() -> None:
    """All rows equal: the interval is the log-normal's own, L exp(+-1.96 s)."""
    rows = np.tile(ensemble("chinchilla")[:1], (20, 1))
    loss = float(row_predictions("chinchilla", rows[:1], None)[0])
    interval = loss_interval("chinchilla", rows, N, D, residual_sd=0.02)
    assert interval is not None
    z = 1.959963984540054
    assert (interval.low, interval.high) == pytest.approx(
        (loss * np.exp(-z * 0.02), loss * np.exp(z * 0.02)), rel=1e-10
    )


def test_law_interval_uses_the_laws_form_and_k() -> None:
    rows = ensemble("bnsl_compute")
    law = parse_law("bnsl_compute", {**CENTRES["bnsl_compute"], "k": 8.0})
    got = law_loss_interval(law, rows, N, D)
    assert got == loss_interval("bnsl_compute", rows, N, D, k=8.0)
    assert got != loss_interval("bnsl_compute", rows, N, D, k=6.0)
    # U is ignored by forms without repetition; data_constrained uses it.
    chinchilla = parse_law("chinchilla", CENTRES["chinchilla"])
    rows = ensemble("chinchilla")
    assert law_loss_interval(chinchilla, rows, N, D, U) == loss_interval("chinchilla", rows, N, D)


def test_too_few_rows_and_bad_arguments() -> None:
    rows = ensemble("overtraining", rows=9)
    assert loss_interval("overtraining", rows, N, D) is None
    assert loss_interval("overtraining", rows, N, D, residual_sd=0.01) is None
    rows = ensemble("overtraining")
    with pytest.raises(InvalidInput, match="residual_sd"):
        loss_interval("overtraining", rows, N, D, residual_sd=-0.1)
    with pytest.raises(InvalidInput, match="form"):
        loss_interval("kaplan", rows, N, D)
    with pytest.raises(ValueError, match="columns"):
        loss_interval("chinchilla", rows, N, D)
    with pytest.raises(ValueError, match="columns"):
        loss_interval("bnsl_params", rows, N, D)
    with pytest.raises(ValueError, match="needs the law's k"):
        loss_interval("bnsl_compute", ensemble("bnsl_compute"), N, D)
    # residual_sd 0 is a noise-free fit: the band, and said so.
    zero = loss_interval("overtraining", rows, N, D, residual_sd=0.0)
    assert zero is not None and zero.kind == BAND_OF_LAW


def test_chinchilla_rows_of_each_chinchilla_family_form() -> None:
    """Plan bands take Chinchilla rows: each row's own law's as_chinchilla()."""
    for form in ("chinchilla", "sparse_avg_params", "data_constrained", "overtraining"):
        rows = ensemble(form, rows=12)
        names = column_names(form)
        expected = [
            list(parse_law(form, dict(zip(names, map(float, row), strict=True)))
                 .as_chinchilla().to_mapping().values())
            for row in rows
        ]  # fmt: skip
        assert chinchilla_rows(form, rows) == pytest.approx(np.array(expected), rel=1e-13)
    with pytest.raises(Infeasible, match="no Chinchilla form"):
        chinchilla_rows("bnsl_params", ensemble("bnsl_params"))
