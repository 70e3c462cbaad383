"""Step 1: task loss as a Chinchilla-form law of (N, D), fitted as the ladder paper does.

L(N, D) = E + A / N^alpha + B / D^beta, in bits per byte. The authors' fit_step1 (OLMo-ladder
src/scripts/step1.py with scaling/fitting_functions.py get_coefficients_huber): parameters
(a, b, alpha, beta, E) with A = e^a, B = e^b; objective the sum over runs of Huber(delta 1e-3)
of ln L_pred - ln L_obs; L-BFGS-B from (3, 6, 0.1, 0.2, 1) with every parameter bounded below
by 0 (so A, B >= 1), ftol 0, gtol 1e-10. One start, no grid: a single ladder of 16 runs is
enough for this start to land where the authors' did, and reproducing their numbers needs the
same start. Like them, the point L-BFGS-B stops at is kept even when its line search ends
"abnormally" (with ftol 0 it usually stops so, at machine precision); only a non-finite or
degenerate (zero-exponent) result is refused.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from pydantic import ValidationError
from scipy.optimize import minimize

from planner.errors import InvalidInput, SolverFailed
from planner.laws import ChinchillaLaw
from planner.tasks._checks import Array, positive_vector, same_length

DELTA = 1e-3
START = (3.0, 6.0, 0.1, 0.2, 1.0)  # (ln A, ln B, alpha, beta, E)
MAX_ITERATIONS = 1_000_000
MIN_RUNS = 5  # five parameters


def _terms(theta: Array, log_n: Array, log_d: Array) -> tuple[Array, Array]:
    return np.exp(theta[0] - theta[2] * log_n), np.exp(theta[1] - theta[3] * log_d)


def _objective(theta: Array, log_n: Array, log_d: Array, log_l: Array) -> tuple[float, Array]:
    """Huber loss on log residuals and its gradient in (a, b, alpha, beta, E)."""
    n_term, d_term = _terms(theta, log_n, log_d)
    predicted = n_term + d_term + theta[4]
    residual = np.log(predicted) - log_l
    clipped = np.clip(residual, -DELTA, DELTA)
    loss = float(np.sum(clipped * (residual - 0.5 * clipped)))
    # d Huber / d residual is the clipped residual; d residual / d theta_i = (d L / d theta_i) / L.
    weight = clipped / predicted
    gradient = np.array(
        [
            weight @ n_term,
            weight @ d_term,
            -(weight * n_term) @ log_n,
            -(weight * d_term) @ log_d,
            float(np.sum(weight)),
        ]
    )
    return loss, gradient


def fit_task_loss_law(params: ArrayLike, tokens: ArrayLike, task_loss: ArrayLike) -> ChinchillaLaw:
    """Fit L(N, D) to one point per run (its N, final D and smoothed final task loss)."""
    n = positive_vector("params", params, MIN_RUNS)
    d = positive_vector("tokens", tokens, MIN_RUNS)
    loss = positive_vector("task_loss", task_loss, MIN_RUNS)
    same_length({"params": n, "tokens": d, "task_loss": loss})
    if np.unique(np.column_stack([n, d]), axis=0).shape[0] < MIN_RUNS:
        raise InvalidInput("params", f"needs at least {MIN_RUNS} distinct (N, D) points")
    result = minimize(
        _objective,
        np.array(START),
        args=(np.log(n), np.log(d), np.log(loss)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * 5,
        tol=0.0,
        options={"ftol": 0.0, "gtol": 1e-10, "maxiter": MAX_ITERATIONS},
    )
    a, b, alpha, beta, e = (float(v) for v in result.x)
    if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
        raise SolverFailed(f"task-loss fit did not converge: {result.message}")
    if alpha <= 0 or beta <= 0:
        raise SolverFailed(
            "task-loss fit is degenerate: an exponent reached 0 (loss flat in N or D)"
        )
    try:
        return ChinchillaLaw(E=e, A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)
    except ValidationError as exc:  # an exponent beyond MAX_EXPONENT, say
        raise SolverFailed(
            f"task-loss fit left the law's domain: {exc.errors()[0]['msg']}"
        ) from exc
