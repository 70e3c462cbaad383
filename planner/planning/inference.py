"""Inference-aware planning (Sardana et al.; LAWS.md §3.1): minimise lifetime cost.

Lifetime cost = c_t N D + c_i N, with c_t = k w_t / mfu_t (training: k FLOPs per param per token)
and c_i = 2 D_inf w_i / mfu_i (inference: 2 FLOPs per param per served token). Both goals are
geometric programs; in log variables they are convex and cvxpy solves them compiled once per
shape (DPP). Along the active loss or budget constraint the problem is convex in ln N alone, so
the point is finished by a bounded scalar solve there and checked against the GP's (as the
compute-optimal planner does; DESIGN.md §8 on solver disagreement along flat optima).

    target loss l:  min c_t N D + c_i N   s.t. A N^-alpha + B D^-beta <= l - E, caps
    lifetime budget: min A N^-alpha + B D^-beta   s.t. c_t N D + c_i N <= C, caps
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import cvxpy as cp
from scipy.optimize import minimize_scalar

from planner.errors import Infeasible, InvalidInput, SolverFailed
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.affine_conic import AffineConicProblem
from planner.planning.float_range import out_of_range_refused, require_in_range
from planner.planning.geometric_program import ACCEPTED_STATUSES, SOLVER_OPTIONS
from planner.validation import non_negative, optional_positive, positive

SOLVER = "CLARABEL"
AGREEMENT = 1e-2
LOG_TOLERANCE = 1e-11
INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0


@dataclass(frozen=True)
class Costs:
    """Relative prices: cost per FLOP and achieved MFU of each phase (1, 1 = plain FLOPs)."""

    training_weight: float = 1.0
    inference_weight: float = 1.0
    training_mfu: float = 1.0
    inference_mfu: float = 1.0

    def validated(self) -> Costs:
        for name in ("training_mfu", "inference_mfu"):
            value = positive(name, getattr(self, name))
            if value > 1:
                raise InvalidInput(name, f"must be in (0, 1], got {value:g}")
        return Costs(
            positive("training_weight", self.training_weight),
            positive("inference_weight", self.inference_weight),
            self.training_mfu,
            self.inference_mfu,
        )


@dataclass(frozen=True)
class InferenceQuery:
    law: ChinchillaLaw
    inference_tokens: float
    target_loss: float | None = None
    compute: float | None = None  # lifetime cost budget, in the units of Costs
    max_params: float | None = None
    max_tokens: float | None = None
    costs: Costs = Costs()
    flops_per_param_token: float = 6.0

    def validated(self) -> InferenceQuery:
        if (self.target_loss is None) == (self.compute is None):
            raise InvalidInput("goal", "give exactly one of a target loss or a lifetime budget")
        return InferenceQuery(
            law=self.law,
            inference_tokens=non_negative("inference_tokens", self.inference_tokens),
            target_loss=None
            if self.target_loss is None
            else positive("target_loss", self.target_loss),
            compute=None if self.compute is None else positive("lifetime_budget", self.compute),
            max_params=optional_positive("max_params", self.max_params),
            max_tokens=optional_positive("max_tokens", self.max_tokens),
            costs=self.costs.validated(),
            flops_per_param_token=positive("flops_per_param_token", self.flops_per_param_token),
        )

    @property
    def training_coefficient(self) -> float:
        return self.flops_per_param_token * self.costs.training_weight / self.costs.training_mfu

    @property
    def inference_coefficient(self) -> float:
        per_param = INFERENCE_FLOPS_PER_PARAM_TOKEN * self.inference_tokens
        return per_param * self.costs.inference_weight / self.costs.inference_mfu


@dataclass(frozen=True)
class LifetimePlan:
    params: float
    tokens: float
    loss: float
    training_flops: float
    inference_flops: float
    cost: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


@dataclass(frozen=True)
class InferencePlan:
    """The inference-aware plan, the Chinchilla-optimal plan for the same loss, and what the
    first saves over the second."""

    plan: LifetimePlan
    chinchilla: LifetimePlan
    binding: tuple[str, ...]
    solver: str

    @property
    def saving_flops(self) -> float:
        return self.chinchilla.total_flops - self.plan.total_flops

    @property
    def saving_cost(self) -> float:
        return self.chinchilla.cost - self.plan.cost

    @property
    def overtraining_ratio(self) -> float:
        """Tokens per parameter over the Chinchilla plan's."""
        return self.plan.tokens_per_param / self.chinchilla.tokens_per_param


def _lifetime(query: InferenceQuery, params: float, tokens: float) -> LifetimePlan:
    training = query.flops_per_param_token * params * tokens
    inference = INFERENCE_FLOPS_PER_PARAM_TOKEN * params * query.inference_tokens
    cost = query.training_coefficient * params * tokens + query.inference_coefficient * params
    plan = LifetimePlan(params, tokens, query.law.loss(params, tokens), training, inference, cost)
    require_in_range("optimum", (params, tokens, plan.loss, cost), N=params, D=tokens)
    return plan


def plan_inference(query: InferenceQuery, check_with_gp: bool = True) -> InferencePlan:
    """The plan minimising lifetime cost for a loss, or loss for a lifetime budget.

    The exact scalar finish answers; the GP checks it unless `check_with_gp` is off (for
    re-solving one query over many ensemble rows, where the point estimate was checked)."""
    query = query.validated()
    with out_of_range_refused("the target, budget and caps"):
        return _solve(query, check_with_gp)


def _solve(query: InferenceQuery, check_with_gp: bool) -> InferencePlan:
    law = query.law
    ct, ci = query.training_coefficient, query.inference_coefficient
    if query.target_loss is not None:
        target = query.target_loss
        if not target > law.E:
            raise Infeasible(
                f"target_loss {target:g} is at or below the irreducible loss E = {law.E:g}",
                field="target_loss",
            )
        low, high = _target_interval(query, target)
        log_n, binding = _finish(lambda x: _target_cost(query, target, x), low, high, query)
        params = query.max_params if "max_params" in binding else math.exp(log_n)
        assert params is not None
        tokens = (
            query.max_tokens
            if "max_tokens" in binding and query.max_tokens is not None
            else closed_form.tokens_for_loss_at_params(law, target, params)
        )
        binding = ("target_loss", *binding)
    else:
        assert query.compute is not None
        low, high = _budget_interval(query, query.compute)
        log_n, binding = _finish(lambda x: _budget_loss(query, x), low, high, query)
        params = query.max_params if "max_params" in binding else math.exp(log_n)
        assert params is not None
        tokens = (query.compute - ci * params) / (ct * params)
        binding = ("lifetime_budget", *binding)
    plan = _lifetime(query, params, tokens)
    solver = "closed_form" if ci == 0 else "scalar/bounded"
    if ci > 0 and check_with_gp:
        gp_params = compiled_inference_gp(
            query.target_loss is not None,
            query.max_params is not None,
            query.max_tokens is not None,
        ).solve(query, (params, tokens))
        if abs(gp_params / params - 1) > AGREEMENT:
            raise SolverFailed(
                f"the GP solver found N = {gp_params:.6g}, the exact optimum on its face is "
                f"N = {params:.6g}; the answer is not trustworthy"
            )
        solver = f"gp/{SOLVER}"
    chinchilla_compute = closed_form.least_compute_for_loss(
        law, plan.loss, query.flops_per_param_token
    )
    n_c, d_c = closed_form.optimal_allocation(law, chinchilla_compute, query.flops_per_param_token)
    return InferencePlan(plan, _lifetime(query, n_c, d_c), binding, solver)


def _target_interval(query: InferenceQuery, target: float) -> tuple[float, float]:
    """ln N range where the target is reachable within the caps."""
    law = query.law
    headroom = target - law.E
    low = math.log(law.A / headroom) / law.alpha  # D -> infinity
    if query.max_tokens is not None:
        rest = headroom - law.B * query.max_tokens**-law.beta
        if rest <= 0:
            raise Infeasible(
                f"with max_tokens = {query.max_tokens:g} the loss cannot reach {target:g}",
                field="target_loss",
            )
        return_low = math.log(law.A / rest) / law.alpha  # D = max_tokens exactly
    else:
        return_low = low + 1e-9  # just inside: D is infinite at low itself
    n_free, _ = closed_form.optimal_allocation(
        law, closed_form.least_compute_for_loss(law, target, query.flops_per_param_token)
    )
    high = math.log(n_free) + 1.0  # the optimum never exceeds the Chinchilla N (§3.1)
    if query.max_params is not None:
        if math.log(query.max_params) <= (low if query.max_tokens is None else return_low):
            raise Infeasible(
                f"with max_params = {query.max_params:g} the loss cannot reach {target:g}",
                field="target_loss",
            )
        high = min(high, math.log(query.max_params))
    return return_low, high


def _target_cost(query: InferenceQuery, target: float, log_n: float) -> float:
    params = math.exp(log_n)
    rest = target - query.law.E - query.law.A * params**-query.law.alpha
    if rest <= 0:
        return math.inf
    tokens = (query.law.B / rest) ** (1 / query.law.beta)
    return float(
        query.training_coefficient * params * tokens + query.inference_coefficient * params
    )


def _budget_interval(query: InferenceQuery, compute: float) -> tuple[float, float]:
    ct, ci = query.training_coefficient, query.inference_coefficient
    high = math.log(compute / ci) if ci > 0 else math.log(compute / ct) + 60.0
    low = math.log(compute / ct) - 60.0
    if query.max_tokens is not None:
        low = max(low, math.log(compute / (ct * query.max_tokens + ci)))
    if query.max_params is not None:
        if math.log(query.max_params) < low:
            caps = f"max_params = {query.max_params:g}"
            if query.max_tokens is not None:
                caps += f" and max_tokens = {query.max_tokens:g}"
            raise Infeasible(f"{caps} cannot use the budget {compute:g}", field="max_params")
        return low, min(high - 1e-12, math.log(query.max_params))
    return low, high - 1e-12


def _budget_loss(query: InferenceQuery, log_n: float) -> float:
    params = math.exp(log_n)
    spare = query.compute - query.inference_coefficient * params  # type: ignore[operator]
    if spare <= 0:
        return math.inf
    tokens = spare / (query.training_coefficient * params)
    return query.law.loss(params, tokens)


def _finish(
    objective: Any, low: float, high: float, query: InferenceQuery
) -> tuple[float, tuple[str, ...]]:
    """Bounded minimisation over ln N in [low, high] (convex there); which cap binds."""
    result = minimize_scalar(
        objective, bounds=(low, high), method="bounded", options={"xatol": LOG_TOLERANCE}
    )
    log_n = float(result.x)
    # The bounded search stops xatol short of an end; a cap binds when its end is no worse.
    binding: list[str] = []
    ends = []
    if query.max_params is not None:
        ends.append((high, "max_params"))
    if query.max_tokens is not None:
        ends.append((low, "max_tokens"))
    for end, name in ends:
        if abs(log_n - end) < 1e-6 and objective(end) <= objective(log_n):
            log_n = end
            binding.append(name)
            break
    return log_n, tuple(binding)


class CompiledInferenceGP:
    """The lifetime-cost GP in log variables centred on a point, compiled once per shape."""

    def __init__(self, target_goal: bool, has_params_cap: bool, has_tokens_cap: bool) -> None:
        x, y = cp.Variable(name="x"), cp.Variable(name="y")
        self.x, self.y = x, y
        self.la, self.lb = cp.Parameter(name="la"), cp.Parameter(name="lb")
        self.alpha = cp.Parameter(nonneg=True, name="alpha")
        self.beta = cp.Parameter(nonneg=True, name="beta")
        self.lt, self.li = cp.Parameter(name="lt"), cp.Parameter(name="li")
        self.n_cap = cp.Parameter(name="n_cap") if has_params_cap else None
        self.d_cap = cp.Parameter(name="d_cap") if has_tokens_cap else None
        loss_terms = cp.hstack([self.la - self.alpha * x, self.lb - self.beta * y])
        cost_terms = cp.hstack([self.lt + x + y, self.li + x])
        if target_goal:
            objective = cp.Minimize(cp.log_sum_exp(cost_terms))
            constraints = [cp.log_sum_exp(loss_terms) <= 0]
        else:
            objective = cp.Minimize(cp.sum(cp.exp(loss_terms)))
            constraints = [cp.log_sum_exp(cost_terms) <= 0]
        if self.n_cap is not None:
            constraints.append(x <= self.n_cap)
        if self.d_cap is not None:
            constraints.append(y <= self.d_cap)
        self.problem = cp.Problem(objective, constraints)
        if not self.problem.is_dcp(dpp=True):
            raise AssertionError("the inference GP must be DPP")
        self.target_goal = target_goal
        self.parameters: list[cp.Parameter] = [
            p
            for p in (
                self.la,
                self.lb,
                self.alpha,
                self.beta,
                self.lt,
                self.li,
                self.n_cap,
                self.d_cap,
            )
            if p is not None
        ]
        self._lock = threading.Lock()
        self._affine: AffineConicProblem | None = None

    def solve(self, query: InferenceQuery, centre: tuple[float, float]) -> float:
        """The GP's optimal N."""
        law = query.law
        n0, d0 = centre
        la = math.log(law.A) - law.alpha * math.log(n0)
        lb = math.log(law.B) - law.beta * math.log(d0)
        lt = math.log(query.training_coefficient * n0 * d0)
        li = math.log(query.inference_coefficient * n0)
        if self.target_goal:
            assert query.target_loss is not None
            scale = math.log(query.target_loss - law.E)
            la, lb = la - scale, lb - scale
            shift = max(lt, li)  # the cost in units of the centre's, of order one
            lt, li = lt - shift, li - shift
        else:
            assert query.compute is not None
            lt, li = lt - math.log(query.compute), li - math.log(query.compute)
            shift = max(la, lb)
            la, lb = la - shift, lb - shift
        values = {"la": la, "lb": lb, "alpha": law.alpha, "beta": law.beta, "lt": lt, "li": li}
        if self.n_cap is not None:
            assert query.max_params is not None
            values["n_cap"] = math.log(query.max_params / n0)
        if self.d_cap is not None:
            assert query.max_tokens is not None
            values["d_cap"] = math.log(query.max_tokens / d0)
        with self._lock:
            try:
                if self._affine is None:
                    # The map is affine (DPP), so any valid point serves to probe it.
                    for parameter in self.parameters:
                        parameter.value = 1.0
                    self._affine = AffineConicProblem(
                        self.problem, self.parameters, (self.x, self.y), SOLVER_OPTIONS
                    )
                status, (x, _) = self._affine.solve([values[p.name()] for p in self.parameters])
            except cp.error.SolverError as exc:
                raise SolverFailed(f"the GP solver {SOLVER} failed: {exc}") from exc
        if status not in ACCEPTED_STATUSES:
            raise SolverFailed(f"the GP solver {SOLVER} ended with status {status}")
        return n0 * math.exp(x)


@cache
def compiled_inference_gp(
    target_goal: bool, has_params_cap: bool, has_tokens_cap: bool
) -> CompiledInferenceGP:
    return CompiledInferenceGP(target_goal, has_params_cap, has_tokens_cap)


def warm_up() -> None:
    """Compile every shape once, so the first real request is fast."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)
    for target in (2.1, None):
        for n_cap in (None, 1e11):
            for d_cap in (None, 1e14):
                query = InferenceQuery(law, 1e12, target, None if target else 1e23, n_cap, d_cap)
                plan_inference(query)
