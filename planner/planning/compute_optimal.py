"""Compute-optimal N and D for a budget, or the least compute for a loss target, under caps.

Without a binding cap the closed form answers. With one, the cvxpy GP (compiled once per shape)
finds the optimum and reports which constraints are active; the answer is then finished exactly
on that face (DESIGN.md §8: solvers disagree by ~1e-3 in N along the flat budget line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import Infeasible, InvalidInput, SolverFailed
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.float_range import out_of_range_refused, require_in_range
from planner.planning.geometric_program import GPSolution, compiled_gp
from planner.validation import optional_positive, positive

CLOSED_FORM = "closed_form"


@dataclass(frozen=True)
class Caps:
    """Engineering limits on a plan; None means no limit."""

    max_params: float | None = None
    max_tokens: float | None = None
    unique_tokens: float | None = None
    max_epochs: float | None = None

    def validated(self) -> Caps:
        """The same caps with every value checked (finite, > 0)."""
        epochs = optional_positive("max_epochs", self.max_epochs)
        if epochs is not None and self.unique_tokens is None:
            raise InvalidInput("max_epochs", "needs unique_tokens")
        caps = Caps(
            max_params=optional_positive("max_params", self.max_params),
            max_tokens=optional_positive("max_tokens", self.max_tokens),
            unique_tokens=optional_positive("unique_tokens", self.unique_tokens),
            max_epochs=epochs,
        )
        if caps.unique_tokens is not None and not math.isfinite(
            caps.unique_tokens * (epochs or 1.0)
        ):
            raise InvalidInput("max_epochs", "unique_tokens x max_epochs overflows a float")
        return caps

    def tokens_cap(self) -> tuple[float, tuple[str, ...]] | None:
        """The tightest cap on D and the names of the caps that set it."""
        candidates: list[tuple[float, str]] = []
        if self.max_tokens is not None:
            candidates.append((self.max_tokens, "max_tokens"))
        if self.unique_tokens is not None:
            epochs = 1.0 if self.max_epochs is None else self.max_epochs
            candidates.append((self.unique_tokens * epochs, "unique_tokens"))
        if not candidates:
            return None
        value = min(v for v, _ in candidates)
        return value, tuple(name for v, name in candidates if v <= value * (1 + 1e-12))


@dataclass(frozen=True)
class ComputeOptimalPlan:
    """The optimum, which constraints bind there and what solved it."""

    params: float
    tokens: float
    loss: float
    flops: float
    binding: tuple[str, ...]
    solver: str
    # Passes over the unique data, D / U; set when the plan priced repetition.
    epochs: float | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def _plan(
    law: ChinchillaLaw, params: float, tokens: float, k: float, binding: list[str], solver: str
) -> ComputeOptimalPlan:
    plan = ComputeOptimalPlan(
        params=params,
        tokens=tokens,
        loss=law.loss(params, tokens),
        flops=k * params * tokens,
        binding=tuple(binding),
        solver=solver,
    )
    numbers = (plan.params, plan.tokens, plan.loss, plan.flops)
    require_in_range("optimum", numbers, N=params, D=tokens)
    return plan


def _guarded(
    query: ComputeOptimalQuery, allow_gp: bool, force_gp: bool
) -> ComputeOptimalPlan | None:
    """Solve; arithmetic that leaves the float range is a property of the request, not a bug."""
    with out_of_range_refused("the budget, target and caps"):
        return _solve(query, allow_gp=allow_gp, force_gp=force_gp)


@dataclass(frozen=True)
class ComputeOptimalQuery:
    """Either a budget (minimise loss) or a loss target (minimise compute), with caps."""

    law: ChinchillaLaw
    compute: float | None = None
    target_loss: float | None = None
    caps: Caps = Caps()
    flops_per_param_token: float = 6.0

    def validated(self) -> ComputeOptimalQuery:
        if (self.compute is None) == (self.target_loss is None):
            raise InvalidInput("goal", "give exactly one of a compute budget or a target loss")
        return ComputeOptimalQuery(
            law=self.law,
            compute=None if self.compute is None else positive("budget.flops", self.compute),
            target_loss=(
                None if self.target_loss is None else positive("target_loss", self.target_loss)
            ),
            caps=self.caps.validated(),
            flops_per_param_token=positive("flops_per_param_token", self.flops_per_param_token),
        )


def try_closed_form(query: ComputeOptimalQuery) -> ComputeOptimalPlan | None:
    """The closed-form answer when no cap binds, else None (a GP is needed).

    Validates the query and raises Infeasible for problems with no answer, so callers can do
    this cheap part inline and send only real solves to a worker.
    """
    return _guarded(query.validated(), allow_gp=False, force_gp=False)


def solve(query: ComputeOptimalQuery, force_gp: bool = False) -> ComputeOptimalPlan:
    """The optimum: closed form when no cap binds (unless force_gp), else the GP."""
    plan = _guarded(query.validated(), allow_gp=True, force_gp=force_gp)
    assert plan is not None
    return plan


def plan_for_budget(
    law: ChinchillaLaw,
    compute: float,
    caps: Caps = Caps(),
    flops_per_param_token: float = 6.0,
    force_gp: bool = False,
) -> ComputeOptimalPlan:
    """Minimise L(N, D) subject to k N D <= C and the caps."""
    return solve(ComputeOptimalQuery(law, compute, None, caps, flops_per_param_token), force_gp)


def plan_for_target_loss(
    law: ChinchillaLaw,
    target_loss: float,
    caps: Caps = Caps(),
    flops_per_param_token: float = 6.0,
    force_gp: bool = False,
) -> ComputeOptimalPlan:
    """Least compute k N D subject to L(N, D) <= target and the caps."""
    query = ComputeOptimalQuery(law, None, target_loss, caps, flops_per_param_token)
    return solve(query, force_gp)


def _solve(query: ComputeOptimalQuery, allow_gp: bool, force_gp: bool) -> ComputeOptimalPlan | None:
    if query.compute is not None:
        return _budget(
            query.law, query.compute, query.caps, query.flops_per_param_token, allow_gp, force_gp
        )
    assert query.target_loss is not None
    return _target(
        query.law, query.target_loss, query.caps, query.flops_per_param_token, allow_gp, force_gp
    )


def _budget(
    law: ChinchillaLaw, compute: float, caps: Caps, k: float, allow_gp: bool, force_gp: bool
) -> ComputeOptimalPlan | None:
    n_cap = caps.max_params
    d_cap = caps.tokens_cap()
    n0, d0 = closed_form.optimal_allocation(law, compute, k)
    inside = (n_cap is None or n0 <= n_cap) and (d_cap is None or d0 <= d_cap[0])
    if inside and not force_gp:
        return _plan(law, n0, d0, k, ["compute"], CLOSED_FORM)
    check_budget_spendable(compute, k, n_cap, d_cap)
    if not allow_gp:
        return None
    gp = compiled_gp("budget", n_cap is not None, d_cap is not None)
    solution = gp.solve(law, (n0, d0), 0.0, n_cap, None if d_cap is None else d_cap[0])
    return _finish_budget(law, compute, k, n_cap, d_cap, solution)


def check_budget_spendable(
    compute: float,
    k: float,
    n_cap: float | None,
    d_cap: tuple[float, tuple[str, ...]] | None,
) -> None:
    """Raise Infeasible when the caps on N and D together allow less than the budget."""
    if n_cap is not None and d_cap is not None and k * n_cap * d_cap[0] < compute * (1 - 1e-9):
        usable = k * n_cap * d_cap[0]
        raise Infeasible(
            f"the caps max_params = {n_cap:g} and {'/'.join(d_cap[1])} = {d_cap[0]:g} allow at "
            f"most {k:g} N D = {usable:.6g} FLOPs, {compute / usable:.4g}x less than the budget "
            f"{compute:.6g}; raise a cap or lower the budget",
            field="max_params",
        )


def _finish_budget(
    law: ChinchillaLaw,
    compute: float,
    k: float,
    n_cap: float | None,
    d_cap: tuple[float, tuple[str, ...]] | None,
    solution: GPSolution,
) -> ComputeOptimalPlan:
    """The exact optimum on the budget line, checked against the solver's point."""
    n_free, _ = closed_form.optimal_allocation(law, compute, k)
    low = None if d_cap is None else compute / (k * d_cap[0])
    params, at_low, at_high = _clamp(n_free, low, n_cap)
    binding = ["compute"]
    if at_high:
        binding.append("max_params")
    if at_low and d_cap is not None:
        binding.extend(d_cap[1])
    tokens = d_cap[0] if at_low and d_cap is not None else compute / (k * params)
    _check_agreement(solution, params)
    return _plan(law, params, tokens, k, binding, f"gp/{solution.solver}")


def _clamp(value: float, low: float | None, high: float | None) -> tuple[float, bool, bool]:
    """`value` clamped into [low, high], and whether each end binds.

    The solver's own active set is unreliable for a cap within its tolerance of the free
    optimum (it may call the cap slack while the free point breaks it). The face is settled
    exactly instead: along the active budget or loss constraint the objective is convex in
    ln N, so the optimum is the free optimum clamped into the interval of N the caps allow.
    """
    if high is not None and value > high:
        value = high
    if low is not None and value < low:
        value = low
    return value, low is not None and value <= low, high is not None and value >= high


# The solver's point must land this close (relative, in N) to the exact optimum; anything
# further is a wrong model or a failed solve, not a tolerance effect.
AGREEMENT = 1e-2


def _check_agreement(solution: GPSolution, params: float) -> None:
    if abs(solution.params / params - 1.0) > AGREEMENT:
        raise SolverFailed(
            f"the GP solver {solution.solver} found N = {solution.params:.6g}, but the exact "
            f"optimum on its face is N = {params:.6g}; the answer is not trustworthy"
        )


def _target(
    law: ChinchillaLaw, target: float, caps: Caps, k: float, allow_gp: bool, force_gp: bool
) -> ComputeOptimalPlan | None:
    n_cap = caps.max_params
    d_cap = caps.tokens_cap()
    compute = closed_form.least_compute_for_loss(law, target, k)
    n0, d0 = closed_form.optimal_allocation(law, compute, k)
    _check_loss_reachable(law, target, n_cap, d_cap)
    inside = (n_cap is None or n0 <= n_cap) and (d_cap is None or d0 <= d_cap[0])
    if inside and not force_gp:
        return _plan(law, n0, d0, k, ["target_loss"], CLOSED_FORM)
    if not allow_gp:
        return None
    gp = compiled_gp("loss", n_cap is not None, d_cap is not None)
    bound = math.log(target - law.E)
    solution = gp.solve(law, (n0, d0), bound, n_cap, None if d_cap is None else d_cap[0])
    low = None
    if d_cap is not None:
        low = closed_form.params_for_loss_at_tokens(law, target, d_cap[0])
    params, at_low, at_high = _clamp(n0, low, n_cap)
    binding = ["target_loss"]
    if at_high:
        binding.append("max_params")
    if at_low and d_cap is not None:
        binding.extend(d_cap[1])
        tokens = d_cap[0]
    else:
        tokens = closed_form.tokens_for_loss_at_params(law, target, params)
    _check_agreement(solution, params)
    return _plan(law, params, tokens, k, binding, f"gp/{solution.solver}")


def _check_loss_reachable(
    law: ChinchillaLaw,
    target: float,
    n_cap: float | None,
    d_cap: tuple[float, tuple[str, ...]] | None,
) -> None:
    """Raise Infeasible when the caps keep the loss above the target at any compute."""
    floor = law.E
    limits = []
    if n_cap is not None:
        floor += law.A * n_cap**-law.alpha
        limits.append(f"max_params = {n_cap:g}")
    if d_cap is not None:
        floor += law.B * d_cap[0] ** -law.beta
        limits.append(f"{'/'.join(d_cap[1])} = {d_cap[0]:g}")
    if limits and not target > floor:
        raise Infeasible(
            f"with {' and '.join(limits)} the loss cannot go below {floor:.6g} at any compute; "
            f"target_loss {target:g} is {floor - target:.4g} nats below that",
            field="target_loss",
        )
