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
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import cvxpy as cp
import numpy as np

from planner.errors import SolverFailed
from planner.laws.chinchilla import ChinchillaLaw

Goal = Literal["budget", "loss"]

# A constraint counts as active when its log-space slack is below this.
ACTIVE_SLACK = 1e-6
SOLVER = "CLARABEL"
# Clarabel's statuses that carry a usable point; the point is then finished on its exact face.
ACCEPTED_STATUSES = frozenset({"Solved", "AlmostSolved"})
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
            x, y = self._solve_compiled()
            active = frozenset(
                name for name, slack in self._slacks(x, y).items() if slack < ACTIVE_SLACK
            )
        return GPSolution(
            params=n0 * math.exp(x), tokens=d0 * math.exp(y), active=active, solver=SOLVER
        )

    def _solve_compiled(self) -> tuple[float, float]:
        """Re-solve with the current Parameter values; the optimal (x, y).

        `get_problem_data` applies the values to the cached DPP map (no recompilation) and the
        solver's primal vector is read directly: `Problem.solve()` adds about 2 ms per call of
        result unpacking that this problem does not need (bench/RESULTS.md).
        """
        try:
            data, chain, _ = self.problem.get_problem_data(SOLVER)
            raw = chain.solve_via_data(
                self.problem, data, warm_start=False, verbose=False, solver_opts=SOLVER_OPTIONS
            )
        except cp.error.SolverError as exc:
            raise SolverFailed(f"the GP solver {SOLVER} failed: {exc}") from exc
        status = str(raw.status)
        if status not in ACCEPTED_STATUSES:
            raise SolverFailed(f"the GP solver {SOLVER} ended with status {status}")
        columns = data["param_prob"].var_id_to_col
        return float(raw.x[columns[self.x.id]]), float(raw.x[columns[self.y.id]])

    def _slacks(self, x: float, y: float) -> dict[str, float]:
        """Log-space slack of every constraint at (x, y)."""
        bound = float(self.bound.value)
        slacks: dict[str, float] = {}
        if self.goal == "budget":
            slacks["compute"] = bound - x - y
        else:
            terms = (
                float(self.la.value) - float(self.alpha.value) * x,
                float(self.lb.value) - float(self.beta.value) * y,
            )
            slacks["target_loss"] = bound - float(np.logaddexp(*terms))
        if self.params_cap is not None:
            slacks["max_params"] = float(self.params_cap.value) - x
        if self.tokens_cap is not None:
            slacks["max_tokens"] = float(self.tokens_cap.value) - y
        return slacks


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
