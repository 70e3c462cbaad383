"""Over-training queries on a Gadre et al. law (LAWS.md §3.2), all in closed form.

With M = D/N the tokens per parameter and C = 6ND, L(C, M) = E + (a M^eta + b M^-eta) C^-eta.
Given C and M the loss follows; given a loss (or a downstream error, through
Err(L) = epsilon - k exp(-gamma L)) and M the compute follows; with M left open the best
multiplier at any compute is M* = (b/a)^(1/(2 eta)). The penalty of a multiplier is its
reducible loss over M*'s at equal compute, (a M^eta + b M^-eta) / (2 sqrt(a b)); at equal loss
it costs penalty^(1/eta) times M*'s compute.

M* is only trustworthy inside the multipliers the law was fitted on (Gadre fits span 5-640):
with the published 5-run fits it is ~7, not the Chinchilla 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import Infeasible, InvalidInput
from planner.laws.overtraining import OvertrainingLaw
from planner.planning.float_range import out_of_range_refused, require_in_range
from planner.validation import positive

# The law defines compute as 6 N D: its a and b absorb that 6 (a = A 6^eta, b = B 6^eta).
FLOPS_PER_PARAM_TOKEN = 6.0


@dataclass(frozen=True)
class OvertrainingQuery:
    """One goal (compute, target loss or target downstream error) and an optional multiplier."""

    law: OvertrainingLaw
    compute: float | None = None
    target_loss: float | None = None
    target_error: float | None = None
    # Tokens per parameter; None picks the best multiplier M*.
    multiplier: float | None = None

    def validated(self) -> OvertrainingQuery:
        goals = [g for g in (self.compute, self.target_loss, self.target_error) if g is not None]
        if len(goals) != 1:
            raise InvalidInput(
                "goal", "give exactly one of a compute budget, a target loss or a target error"
            )
        return OvertrainingQuery(
            law=self.law,
            compute=None if self.compute is None else positive("budget.flops", self.compute),
            target_loss=None
            if self.target_loss is None
            else positive("target_loss", self.target_loss),
            target_error=None
            if self.target_error is None
            else positive("target_error", self.target_error),
            multiplier=None if self.multiplier is None else positive("multiplier", self.multiplier),
        )


@dataclass(frozen=True)
class OvertrainingPlan:
    """The model at one multiplier, and how it compares with the best multiplier."""

    multiplier: float
    params: float
    tokens: float
    flops: float
    loss: float
    # Predicted average top-1 downstream error; None when the law has no error link.
    downstream_error: float | None
    best_multiplier: float
    # Reducible loss at this multiplier over that at M*, for equal compute (>= 1).
    loss_penalty: float
    # Compute this multiplier needs over M*'s, for equal loss (>= 1).
    compute_ratio: float


def best_multiplier(law: OvertrainingLaw) -> float:
    """M* = (b/a)^(1/(2 eta)): the tokens per parameter minimising L at any fixed compute."""
    return float((law.b / law.a) ** (1.0 / (2.0 * law.eta)))


def loss_penalty(law: OvertrainingLaw, multiplier: float) -> float:
    """(a M^eta + b M^-eta) / (2 sqrt(a b)): 1 at M*, growing both ways."""
    return float(_shape(law, multiplier) / (2.0 * math.sqrt(law.a * law.b)))


def loss_at(law: OvertrainingLaw, compute: float, multiplier: float) -> float:
    """L(C, M) = E + (a M^eta + b M^-eta) C^-eta."""
    return float(law.E + _shape(law, multiplier) * compute**-law.eta)


def compute_for_loss(law: OvertrainingLaw, target_loss: float, multiplier: float) -> float:
    """C = ((a M^eta + b M^-eta) / (l - E))^(1/eta); needs l > E."""
    if not target_loss > law.E:
        raise Infeasible(
            f"target_loss {target_loss:g} is not above the law's irreducible loss E = {law.E:g}: "
            "no finite compute reaches it",
            field="target_loss",
        )
    # In logs: 1/eta is ~8, so the power overflows for targets close to E.
    log_compute = (math.log(_shape(law, multiplier)) - math.log(target_loss - law.E)) / law.eta
    if log_compute > math.log(1e300):
        raise Infeasible(
            f"target_loss {target_loss:g} is so close to E = {law.E:g} that reaching it needs "
            "more than 1e300 FLOPs",
            field="target_loss",
        )
    return math.exp(log_compute)


def loss_for_error(law: OvertrainingLaw, target_error: float) -> float:
    """The loss whose predicted downstream error is the target: -ln((epsilon - Err)/k) / gamma."""
    if not law.has_error_link:
        raise Infeasible(
            "this law has no downstream-error link (epsilon, k, gamma); give a target loss",
            field="target_error",
        )
    assert law.epsilon is not None and law.k is not None and law.gamma is not None
    # Err(L) rises from epsilon - k at L = 0 towards epsilon as L grows.
    lowest, highest = law.epsilon - law.k, law.epsilon
    if not lowest < target_error < highest:
        raise Infeasible(
            f"target_error {target_error:g} is outside the errors the link can predict, "
            f"({max(lowest, 0.0):g}, {highest:g})",
            field="target_error",
        )
    loss = -math.log((law.epsilon - target_error) / law.k) / law.gamma
    if not loss > law.E:
        floor = law.downstream_error(law.E)
        raise Infeasible(
            f"target_error {target_error:g} needs loss {loss:.6g}, not above the law's "
            f"irreducible loss E = {law.E:g}: the lowest error it can predict is {floor:.6g}",
            field="target_error",
        )
    return loss


def plan_overtraining(query: OvertrainingQuery) -> OvertrainingPlan:
    """The model, its compute and loss at the query's multiplier (M* when not given)."""
    query = query.validated()
    with out_of_range_refused("the multiplier and the goal"):
        return _checked(_solve(query))


def _solve(query: OvertrainingQuery) -> OvertrainingPlan:
    law = query.law
    best = best_multiplier(law)
    multiplier = best if query.multiplier is None else query.multiplier
    if query.compute is not None:
        compute = query.compute
    else:
        target = query.target_loss
        if target is None:
            assert query.target_error is not None
            target = loss_for_error(law, query.target_error)
        compute = compute_for_loss(law, target, multiplier)
    return _plan(law, compute, multiplier, best)


def _plan(law: OvertrainingLaw, compute: float, multiplier: float, best: float) -> OvertrainingPlan:
    # C = 6 N D = 6 M N^2.
    params = math.sqrt(compute / (FLOPS_PER_PARAM_TOKEN * multiplier))
    tokens = multiplier * params
    loss = loss_at(law, compute, multiplier)
    penalty = loss_penalty(law, multiplier)
    return OvertrainingPlan(
        multiplier=multiplier,
        params=params,
        tokens=tokens,
        flops=compute,
        loss=loss,
        downstream_error=None if law.epsilon is None else law.downstream_error(loss),
        best_multiplier=best,
        loss_penalty=penalty,
        compute_ratio=penalty ** (1.0 / law.eta),
    )


def _checked(plan: OvertrainingPlan) -> OvertrainingPlan:
    numbers = (plan.params, plan.tokens, plan.loss, plan.compute_ratio, plan.best_multiplier)
    require_in_range("plan", numbers, N=plan.params, D=plan.tokens)
    if plan.params < 1 or plan.tokens < 1:
        raise Infeasible(
            f"at {plan.multiplier:.6g} tokens per parameter this compute gives N = "
            f"{plan.params:.3g} params and D = {plan.tokens:.3g} tokens; a model needs at least "
            "one of each",
            field="multiplier",
        )
    return plan


def _shape(law: OvertrainingLaw, multiplier: float) -> float:
    return float(law.a * multiplier**law.eta + law.b * multiplier**-law.eta)
