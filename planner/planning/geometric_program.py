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
from planner.planning.affine_conic import AffineConicProblem

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
        self.bound = cp.Parameter(name="bound")
        self.params_cap = cp.Parameter(name="params_cap") if has_params_cap else None
        self.tokens_cap = cp.Parameter(name="tokens_cap") if has_tokens_cap else None
        self.parameters: dict[str, cp.Parameter] = {
            p.name(): p
            for p in (
                self.la,
                self.lb,
                self.alpha,
                self.beta,
                self.bound,
                self.params_cap,
                self.tokens_cap,
            )
            if p is not None
        }
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
        self._affine: AffineConicProblem | None = None

    def solve(
        self,
        law: ChinchillaLaw,
        centre: tuple[float, float],
        bound: float,
        params_cap: float | None,
        tokens_cap: float | None,
    ) -> GPSolution:
        """Solve with these values. `bound` is ln(C/(k N0 D0)) or ln(target - E)."""
        values = self.parameter_values(law, centre, bound, params_cap, tokens_cap)
        n0, d0 = centre
        with self._lock:
            x, y = self._solve_compiled(values)
        active = frozenset(
            name for name, slack in self._slacks(values, x, y).items() if slack < ACTIVE_SLACK
        )
        return GPSolution(
            params=n0 * math.exp(x), tokens=d0 * math.exp(y), active=active, solver=SOLVER
        )

    def parameter_values(
        self,
        law: ChinchillaLaw,
        centre: tuple[float, float],
        bound: float,
        params_cap: float | None,
        tokens_cap: float | None,
    ) -> dict[str, float]:
        """The value of each Parameter (by name) for one request."""
        n0, d0 = centre
        la = math.log(law.A) - law.alpha * math.log(n0)
        lb = math.log(law.B) - law.beta * math.log(d0)
        # Divide both terms by the reducible loss at the centre, so the objective is of order
        # one whatever the law's scale (the solver's tolerances are absolute).
        shift = float(np.logaddexp(la, lb))
        values = {
            "la": la - shift,
            "lb": lb - shift,
            "alpha": law.alpha,
            "beta": law.beta,
            "bound": bound - shift if self.goal == "loss" else bound,
        }
        if self.params_cap is not None:
            if params_cap is None:
                raise ValueError("this problem shape needs params_cap")
            values["params_cap"] = math.log(params_cap / n0)
        if self.tokens_cap is not None:
            if tokens_cap is None:
                raise ValueError("this problem shape needs tokens_cap")
            values["tokens_cap"] = math.log(tokens_cap / d0)
        return values

    def _solve_compiled(self, values: dict[str, float]) -> tuple[float, float]:
        """The optimal (x, y) for these parameter values."""
        try:
            if self._affine is None:
                # The map is affine, so any valid point serves to probe it; a fixed one keeps a
                # strange first request from shaping it.
                for parameter in self.parameters.values():
                    parameter.value = 1.0
                self._affine = AffineConicProblem(
                    self.problem, list(self.parameters.values()), (self.x, self.y), SOLVER_OPTIONS
                )
            status, (x, y) = self._affine.solve([values[name] for name in self.parameters])
        except cp.error.SolverError as exc:
            raise SolverFailed(f"the GP solver {SOLVER} failed: {exc}") from exc
        if status not in ACCEPTED_STATUSES:
            raise SolverFailed(f"the GP solver {SOLVER} ended with status {status}")
        return x, y

    def _slacks(self, values: dict[str, float], x: float, y: float) -> dict[str, float]:
        """Log-space slack of every constraint at (x, y)."""
        slacks: dict[str, float] = {}
        if self.goal == "budget":
            slacks["compute"] = values["bound"] - x - y
        else:
            terms = (values["la"] - values["alpha"] * x, values["lb"] - values["beta"] * y)
            slacks["target_loss"] = values["bound"] - float(np.logaddexp(*terms))
        if "params_cap" in values:
            slacks["max_params"] = values["params_cap"] - x
        if "tokens_cap" in values:
            slacks["max_tokens"] = values["tokens_cap"] - y
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
