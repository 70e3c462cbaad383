"""The constrained Chinchilla optimum as a geometric program, compiled once per shape.

In centred log variables x = ln(N / N0), y = ln(D / D0) the GP becomes an exponential-cone
problem that cvxpy accepts under DPP, so each shape (which caps are present, which goal) is
built and compiled once and later requests only set Parameter values (DESIGN.md §6). Centring
on the unconstrained optimum keeps x and y of order one, where solver tolerances are meaningful.

    budget goal:  min exp(la - alpha x) + exp(lb - beta y)   s.t. x + y <= lc, caps
    loss goal:    min x + y   s.t. log(exp(la - alpha x) + exp(lb - beta y)) <= lt, caps
    caps:         x <= ln(N_max / N0),  y <= ln(D_max / D0)
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import cvxpy as cp

from planner.errors import SolverFailed
from planner.laws.chinchilla import ChinchillaLaw

Goal = Literal["budget", "loss"]

# A constraint counts as active when its log-space slack is below this.
ACTIVE_SLACK = 1e-6
SOLVER = "CLARABEL"
SOLVER_OPTIONS: dict[str, Any] = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "max_iter": 200,
}


@dataclass(frozen=True)
class GPSolution:
    """The solver's own point (not yet finished on the active face) and its active set."""

    params: float
    tokens: float
    active: frozenset[str]
    solver: str


class CompiledGP:
    """One problem shape: built and compiled on first solve, re-solved with new values after."""

    def __init__(self, goal: Goal, has_params_cap: bool, has_tokens_cap: bool) -> None:
        self.goal = goal
        self.x = cp.Variable(name="log_params")
        self.y = cp.Variable(name="log_tokens")
        self.la = cp.Parameter(name="la")
        self.lb = cp.Parameter(name="lb")
        self.alpha = cp.Parameter(nonneg=True, name="alpha")
        self.beta = cp.Parameter(nonneg=True, name="beta")
        self.bound = cp.Parameter(name="lc_or_lt")
        self.params_cap = cp.Parameter(name="params_cap") if has_params_cap else None
        self.tokens_cap = cp.Parameter(name="tokens_cap") if has_tokens_cap else None
        terms = [self.la - self.alpha * self.x, self.lb - self.beta * self.y]
        self.constraints: dict[str, cp.Constraint] = {}
        if goal == "budget":
            objective = cp.Minimize(cp.exp(terms[0]) + cp.exp(terms[1]))
            self.constraints["compute"] = self.x + self.y <= self.bound
        else:
            objective = cp.Minimize(self.x + self.y)
            self.constraints["target_loss"] = cp.log_sum_exp(cp.hstack(terms)) <= self.bound
        if self.params_cap is not None:
            self.constraints["max_params"] = self.x <= self.params_cap
        if self.tokens_cap is not None:
            self.constraints["max_tokens"] = self.y <= self.tokens_cap
        self.problem = cp.Problem(objective, list(self.constraints.values()))
        if not self.problem.is_dcp(dpp=True):
            raise AssertionError("the compute-optimal GP must be DPP")
        self._lock = threading.Lock()

    def solve(
        self,
        law: ChinchillaLaw,
        centre: tuple[float, float],
        bound: float,
        params_cap: float | None,
        tokens_cap: float | None,
    ) -> GPSolution:
        """Solve with these values. `bound` is ln(C/(k N0 D0)) or ln(target - E)."""
        n0, d0 = centre
        with self._lock:
            self.la.value = math.log(law.A) - law.alpha * math.log(n0)
            self.lb.value = math.log(law.B) - law.beta * math.log(d0)
            self.alpha.value = law.alpha
            self.beta.value = law.beta
            self.bound.value = bound
            if self.params_cap is not None and params_cap is not None:
                self.params_cap.value = math.log(params_cap / n0)
            if self.tokens_cap is not None and tokens_cap is not None:
                self.tokens_cap.value = math.log(tokens_cap / d0)
            try:
                with warnings.catch_warnings():
                    # OPTIMAL_INACCURATE is accepted below and then finished on the exact face.
                    warnings.simplefilter("ignore", UserWarning)
                    self.problem.solve(solver=SOLVER, **SOLVER_OPTIONS)
            except cp.error.SolverError as exc:
                raise SolverFailed(f"the GP solver {SOLVER} failed: {exc}") from exc
            if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
                raise SolverFailed(
                    f"the GP solver {SOLVER} ended with status {self.problem.status}"
                )
            x, y = float(self.x.value), float(self.y.value)
            active = frozenset(
                name
                for name, con in self.constraints.items()
                if self._slack(name, con) < ACTIVE_SLACK
            )
        return GPSolution(
            params=n0 * math.exp(x), tokens=d0 * math.exp(y), active=active, solver=SOLVER
        )

    def _slack(self, name: str, constraint: cp.Constraint) -> float:
        if name == "target_loss":
            # Relative slack of the loss constraint in log space.
            return float(self.bound.value - constraint.args[0].value)
        return float(-constraint.expr.value)


@cache
def compiled_gp(goal: Goal, has_params_cap: bool, has_tokens_cap: bool) -> CompiledGP:
    """The process-wide compiled problem of one shape."""
    return CompiledGP(goal, has_params_cap, has_tokens_cap)


def warm_up() -> None:
    """Import cvxpy and compile every shape once, so the first real request is fast."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    goals: tuple[Goal, ...] = ("budget", "loss")
    for goal in goals:
        for has_n in (False, True):
            for has_d in (False, True):
                gp = compiled_gp(goal, has_n, has_d)
                bound = 0.0 if goal == "budget" else math.log(0.5)
                gp.solve(law, (1e9, 2e10), bound, 1e12 if has_n else None, 1e14 if has_d else None)
