"""Step 2: the sigmoid link from task loss to accuracy, its fit and its inverse.

acc(L) = a / (1 + exp(-k (L - x0))) + b, written as the ladder paper's code writes it, with
a < 0 < k: accuracy falls from b (as L -> -inf) to a + b (as L -> inf). b is the ceiling a
perfect model approaches, a + b the floor (near chance) of a useless one. The authors'
fit_step2 (OLMo-ladder src/scripts/step2.py): scipy curve_fit (least squares, trf) from
(chance - 1, 0.9, 3, ceiling) within a in [-1, 0], x0 >= 0, k >= 0, b in [0, 1], with one extra
point (L = 0, accuracy = ceiling) saying a model of zero loss is perfect.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

from planner.errors import Infeasible, InvalidInput, SolverFailed
from planner.tasks._checks import Array, accuracy_vector, positive_vector, same_length
from planner.validation import finite

MAX_EVALUATIONS = 500_000
MIN_POINTS = 4  # four parameters


def _sigmoid(loss: Array, a: float, x0: float, k: float, b: float) -> Array:
    # expit is 1 / (1 + exp(-z)) without overflow warnings for large |z|.
    return np.asarray(a * expit(k * (loss - x0)) + b)


@dataclass(frozen=True)
class SigmoidLink:
    """acc(L) = a / (1 + exp(-k (L - x0))) + b with a < 0 < k; L in bits per byte."""

    a: float
    x0: float
    k: float
    b: float

    def __post_init__(self) -> None:
        for name in ("a", "x0", "k", "b"):
            finite(name, getattr(self, name))
        if not self.a < 0:
            raise InvalidInput("a", "must be < 0 (accuracy falls as task loss rises)")
        if not self.k > 0:
            raise InvalidInput("k", "must be > 0")

    @property
    def floor(self) -> float:
        """Accuracy as task loss grows without bound (a + b)."""
        return self.a + self.b

    @property
    def ceiling(self) -> float:
        """Accuracy as task loss falls without bound (b); not reached at any loss >= 0."""
        return self.b

    def accuracy(self, task_loss: ArrayLike) -> Array:
        """Accuracy at each task loss (broadcasts)."""
        return _sigmoid(np.asarray(task_loss, dtype=np.float64), self.a, self.x0, self.k, self.b)

    def task_loss_for(self, accuracy: float) -> float:
        """The task loss at which the link gives `accuracy`: the largest loss that reaches it.

        L = x0 - ln(a / (acc - b) - 1) / k, defined for acc strictly between a + b and b.
        Infeasible outside, and where the answer would be a loss <= 0 bits per byte.
        """
        target = finite("accuracy", accuracy)
        if not 0 <= target <= 1:
            raise InvalidInput("accuracy", "must lie in [0, 1]")
        if target >= self.b:
            raise Infeasible(
                f"accuracy {target:g} is at or above the link's ceiling b = {self.b:.4g}: "
                "no task loss reaches it"
            )
        if target <= self.floor:
            raise Infeasible(
                f"accuracy {target:g} is at or below the link's floor a + b = {self.floor:.4g}: "
                "the link gives more at every task loss, so no loss maps to it"
            )
        # a / (acc - b) > 1 here (both negative, |a| larger), so the log is finite.
        loss = self.x0 - math.log(self.a / (target - self.b) - 1.0) / self.k
        if not loss > 0:
            raise Infeasible(
                f"accuracy {target:g} needs a task loss of {loss:.4g} bits per byte; "
                "a loss must be > 0"
            )
        return loss


def fit_sigmoid_link(
    task_loss: ArrayLike, accuracy: ArrayLike, chance: float, ceiling: float = 1.0
) -> SigmoidLink:
    """Fit the link to (task loss, accuracy) checkpoints. `chance` (the task's random-guess
    accuracy) sets the start a = chance - 1; `ceiling` is the accuracy pinned at zero loss."""
    loss = positive_vector("task_loss", task_loss, MIN_POINTS)
    acc = accuracy_vector("accuracy", accuracy, MIN_POINTS)
    same_length({"task_loss": loss, "accuracy": acc})
    chance = finite("chance", chance)
    ceiling = finite("ceiling", ceiling)
    if not 0 <= chance < 1:
        raise InvalidInput("chance", "must lie in [0, 1)")
    if not chance < ceiling <= 1:
        raise InvalidInput("ceiling", "must lie in (chance, 1]")
    xs = np.append(loss, 0.0)
    ys = np.append(acc, ceiling)
    try:
        with warnings.catch_warnings():
            # The covariance is not used; a singular one only warns.
            warnings.simplefilter("ignore", OptimizeWarning)
            coefficients, _ = curve_fit(
                _sigmoid,
                xs,
                ys,
                p0=[chance - 1.0, 0.9, 3.0, ceiling],
                bounds=([-1.0, 0.0, 0.0, 0.0], [0.0, np.inf, np.inf, 1.0]),
                maxfev=MAX_EVALUATIONS,
            )
    except (RuntimeError, ValueError) as exc:
        raise SolverFailed(f"sigmoid link fit failed: {exc}") from exc
    a, x0, k, b = (float(c) for c in coefficients)
    if not (a < 0 and k > 0):
        raise SolverFailed("sigmoid link fit is degenerate: accuracy does not vary with loss")
    return SigmoidLink(a=a, x0=x0, k=k, b=b)
