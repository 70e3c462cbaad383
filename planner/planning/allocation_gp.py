"""The multi-job compute split as one geometric program, compiled once per shape (DPP).

Job i gets N_i = N0_i e^x_i params and D_i = D0_i e^y_i tokens, centred on the unconstrained
optimum (N0_i, D0_i) for a nominal share s_i = k_i N0_i D0_i of the total C, so x and y are of
order one. Dividing the objective by S = sum_i w_i (A_i N0_i^-alpha_i + B_i D0_i^-beta_i) (the
weighted reducible loss at the centre) and the compute by C, the GP is

    min  F = sum_i exp(la_i - alpha_i x_i) + exp(lb_i - beta_i y_i)
    s.t. sum_i exp(lc_i + x_i + y_i) <= u       (u = 1: the total budget)
         lmin_i <= x_i + y_i <= lmax_i,  x_i <= ncap_i,  y_i <= dcap_i   (where present)

with la_i = ln(w_i A_i N0_i^-alpha_i / S), lb_i likewise, lc_i = ln(s_i / C). The shape is the
tuple of which optional bounds each job has; jobs are sorted by that pattern first, so shapes
that differ only in job order share one compiled problem.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import clarabel
import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.solvers.conic_solvers.clarabel_conif import (
    CLARABEL,
    dims_to_solver_cones,
)

from planner.errors import SolverFailed
from planner.planning import closed_form
from planner.planning.affine_conic import AffineConicProblem
from planner.planning.geometric_program import ACCEPTED_STATUSES, SOLVER, SOLVER_OPTIONS

if TYPE_CHECKING:
    from planner.planning.allocation import Job

# Which optional bounds a job has: min_flops, max_flops, max_params, max_tokens.
JobShape = tuple[bool, bool, bool, bool]


def job_shape(job: Job) -> JobShape:
    return (
        job.min_flops is not None,
        job.max_flops is not None,
        job.max_params is not None,
        job.max_tokens is not None,
    )


def flops_range(job: Job) -> tuple[float, float]:
    """The compute the job can use: [min_flops or 0, min(max_flops, k N_max D_max) or inf]."""
    high = math.inf if job.max_flops is None else job.max_flops
    if job.max_params is not None and job.max_tokens is not None:
        high = min(high, job.flops_per_param_token * job.max_params * job.max_tokens)
    return (0.0 if job.min_flops is None else job.min_flops), high


@dataclass(frozen=True)
class GPAllocation:
    """The solver's own split (in the caller's job order), before the exact finish.

    marginal_value is -d(sum_i w_i L_i)/d C from the budget constraint's dual, nats per FLOP.
    """

    flops: tuple[float, ...]
    marginal_value: float
    solver: str


class CompiledAllocationGP:
    """One shape: built, compiled and its conic map recorded once; re-solved with new values."""

    def __init__(self, shape: tuple[JobShape, ...]) -> None:
        self.shape = shape
        self.budget = cp.Parameter(name="budget")
        self.parameters: list[cp.Parameter] = [self.budget]
        self.variables: list[cp.Variable] = []
        objective: list[cp.Expression] = []
        spend: list[cp.Expression] = []
        constraints: list[cp.Constraint] = []
        for i, (has_min, has_max, has_n, has_d) in enumerate(shape):
            x, y = cp.Variable(name=f"x{i}"), cp.Variable(name=f"y{i}")
            self.variables += [x, y]
            la, lb, lc = (cp.Parameter(name=f"{p}{i}") for p in ("la", "lb", "lc"))
            alpha = cp.Parameter(nonneg=True, name=f"alpha{i}")
            beta = cp.Parameter(nonneg=True, name=f"beta{i}")
            self.parameters += [la, lb, lc, alpha, beta]
            objective += [cp.exp(la - alpha * x), cp.exp(lb - beta * y)]
            spend.append(cp.exp(lc + x + y))
            for present, name, lhs, upper in (
                (has_min, "lmin", x + y, False),
                (has_max, "lmax", x + y, True),
                (has_n, "ncap", x, True),
                (has_d, "dcap", y, True),
            ):
                if present:
                    bound = cp.Parameter(name=f"{name}{i}")
                    self.parameters.append(bound)
                    constraints.append(lhs <= bound if upper else lhs >= bound)
        constraints.append(cp.sum(cp.hstack(spend)) <= self.budget)
        self.problem = cp.Problem(cp.Minimize(cp.sum(cp.hstack(objective))), constraints)
        if not self.problem.is_dcp(dpp=True):
            raise AssertionError("the allocation GP must be DPP")
        self._lock = threading.Lock()
        # The map is affine, so any valid point serves to probe it; a fixed one keeps a strange
        # first request from shaping it.
        for parameter in self.parameters:
            parameter.value = 1.0
        self._affine = AffineConicProblem(
            self.problem, self.parameters, self.variables, SOLVER_OPTIONS
        )
        data, _, _ = self.problem.get_problem_data(cp.CLARABEL)
        self._cones = dims_to_solver_cones(data["dims"])
        self._settings = CLARABEL.parse_solver_opts(False, dict(SOLVER_OPTIONS))
        self._p = sp.csc_array((data["c"].size, data["c"].size))  # no quadratic term
        columns = data["param_prob"].var_id_to_col
        self._columns = [columns[v.id] for v in self.variables]
        # The budget u enters only b (the objective and A do not depend on it), so by the
        # envelope theorem on Clarabel's min c'x s.t. Ax + s = b: dF*/du = -z . db/du.
        base = [1.0] * len(self.parameters)
        _, b_one, _ = self._affine.data(base)
        _, b_two, _ = self._affine.data([2.0, *base[1:]])
        self._db_budget = b_two - b_one

    def solve(self, values: list[float]) -> tuple[list[float], float]:
        """(x, y) of every job, interleaved, and nu = -dF*/du, for these parameter values."""
        with self._lock:
            a, b, c = self._affine.data(values)
            try:
                solution = clarabel.DefaultSolver(
                    self._p, c, a, b, self._cones, self._settings
                ).solve()
            except (RuntimeError, ValueError) as exc:
                raise SolverFailed(f"the allocation GP solver {SOLVER} failed: {exc}") from exc
        status = str(solution.status)
        if status not in ACCEPTED_STATUSES:
            raise SolverFailed(f"the allocation GP solver {SOLVER} ended with status {status}")
        point = [float(solution.x[col]) for col in self._columns]
        return point, float(np.dot(solution.z, self._db_budget))


@cache
def compiled_allocation_gp(shape: tuple[JobShape, ...]) -> CompiledAllocationGP:
    """The process-wide compiled problem of one shape (jobs sorted by pattern)."""
    return CompiledAllocationGP(shape)


def solve_gp(jobs: tuple[Job, ...], compute: float) -> GPAllocation:
    """The solver's split of `compute` over valid, feasible jobs, and its dual marginal value."""
    order = sorted(range(len(jobs)), key=lambda i: job_shape(jobs[i]))
    ordered = [jobs[i] for i in order]
    gp = compiled_allocation_gp(tuple(job_shape(job) for job in ordered))
    shares, log_terms, per_job = [], [], []
    for job in ordered:
        low, high = flops_range(job)
        share = min(max(compute / len(jobs), low), high)
        k = job.flops_per_param_token
        n0, _ = closed_form.optimal_allocation(job.law, share, k)
        d0 = share / (k * n0)
        law, ln_w = job.law, math.log(job.weight)
        la = ln_w + math.log(law.A) - law.alpha * math.log(n0)
        lb = ln_w + math.log(law.B) - law.beta * math.log(d0)
        shares.append(share)
        log_terms += [la, lb]
        bounds = [
            (job.min_flops, share),
            (job.max_flops, share),
            (job.max_params, n0),
            (job.max_tokens, d0),
        ]
        # lc = ln(s / C); the bounds in the same centred logs.
        per_job.append((la, lb, math.log(share / compute), law.alpha, law.beta, bounds))
    shift = float(np.logaddexp.reduce(log_terms))  # ln S
    values = [1.0]
    for la, lb, lc, alpha, beta, bounds in per_job:
        values += [la - shift, lb - shift, lc, alpha, beta]
        values += [math.log(value / unit) for value, unit in bounds if value is not None]
    point, nu = gp.solve(values)
    flops = [0.0] * len(jobs)
    for rank, slot in enumerate(order):
        # k N D = k N0 D0 e^(x + y) = s e^(x + y)
        flops[slot] = shares[rank] * math.exp(point[2 * rank] + point[2 * rank + 1])
    # The true objective is sum_i w_i E_i + S F, and u scales the budget: sum k N D <= u C.
    # So d(objective)/dC = S dF*/du du/dC = -S nu / C, i.e. mu = S nu / C.
    return GPAllocation(tuple(flops), math.exp(shift) * nu / compute, f"gp/{SOLVER}")
