"""Sparse pre-training plans (Jin et al. 2025; LAWS.md §6): the law's N is the average
parameter count over training.

Gradual magnitude pruning on the Zhu & Gupta cubic schedule takes a fraction p of the parameters
(the prunable, linear-layer part) from dense to a final sparsity s_f between the token fractions
t0 and t1. With m the time average of s(t)/s_f over training, m = 3/4 (t1 - t0) + (1 - t1)
(0.625 for Jin's 25% -> 75%, LAWS.md §11.9),

    N_avg = N_dense (1 - p m s_f),   N_final = N_dense (1 - p s_f).

Training compute is k N_avg D when the sparse FLOPs are realised, k N_dense D on dense kernels.

* final_sparsity fixed: the Chinchilla optimum in (N_avg, D) on the budget line, k N_avg D = C,
  or k N_avg D = C (1 - p m s_f) on dense kernels; then N_dense and N_final follow. Closed form.
* final_params fixed (a deployed size): s_f is the decision. R = N_avg / N_final =
  (1 - p m s) / (1 - p s) rises from 1 at s = 0 towards (1 - p m) / (1 - p) as s -> 1 (without
  bound when p = 1), and inverts to s = (R - 1) / (p (R - m)). With sparse FLOPs D = C / (k N_avg),
  so the loss depends on N_avg alone, convex in ln N_avg: the optimum is N_opt(C) clamped into
  [N_final, N_final R(s_max)]. On dense kernels pruning costs tokens, D = C (1 - p s) / (k N_final):
  no closed form, so a scan and a bounded scalar solve over x = -ln(1 - p s) find it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from planner.errors import Infeasible, InvalidInput
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.float_range import out_of_range_refused, require_in_range
from planner.validation import in_unit_interval, non_negative, positive

CLOSED_FORM = "closed_form"
SCALAR = "scalar/bounded"
# Highest s_f the final_params search may choose: the range of N_avg / N_final is open at s = 1
# (unbounded when p = 1), and the law is unvalidated near total pruning.
MAX_FINAL_SPARSITY = 0.99
# Jin et al.'s near-optimal schedule (LAWS.md §6), the one the law was validated with.
JIN_START, JIN_END = 0.25, 0.75
# Schedule points reported: fractions 0, 0.1, ..., 1 of training tokens.
SCHEDULE_STEPS = 10
# The dense-kernel objective is a sum of a concave-then-convex and a convex term in x; a coarse
# scan picks the basin before the bounded refine.
SCAN_POINTS = 257
X_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PruningSchedule:
    """Zhu & Gupta cubic pruning between token fractions `start` and `end` (LAWS.md §6)."""

    start: float = JIN_START
    end: float = JIN_END

    def validated(self) -> PruningSchedule:
        start = non_negative("prune_start", self.start)
        if start >= 1:
            raise InvalidInput("prune_start", f"must be in [0, 1), got {start:g}")
        end = positive("prune_end", self.end)
        if end > 1:
            raise InvalidInput("prune_end", f"must be in (0, 1], got {end:g}")
        if not start < end:
            raise InvalidInput("prune_end", f"must be after prune_start = {start:g}, got {end:g}")
        return PruningSchedule(start, end)

    def sparsity_at(self, fraction: float, final_sparsity: float) -> float:
        """s(t) = s_f (1 - (1 - (t - t0)/(t1 - t0))^3) on [t0, t1]; 0 before, s_f after."""
        if fraction <= self.start:
            return 0.0
        if fraction >= self.end:
            return final_sparsity
        progress = (fraction - self.start) / (self.end - self.start)
        return final_sparsity * (1.0 - (1.0 - progress) ** 3)

    def mean_sparsity_factor(self) -> float:
        """m = (1/T) ∫ s(t) dt / s_f over all of training.

        On the ramp the integrand is 1 - (1 - u)^3 in u = (t - t0)/(t1 - t0), whose mean over
        [0, 1] is 1 - 1/4 = 3/4; after t1 it is 1; before t0, 0.
        """
        return 0.75 * (self.end - self.start) + (1.0 - self.end)


@dataclass(frozen=True)
class SparsityQuery:
    """A training budget and exactly one of a final sparsity or a final (deployed) size."""

    law: ChinchillaLaw  # its N is the average parameter count over training
    compute: float
    final_sparsity: float | None = None
    final_params: float | None = None
    schedule: PruningSchedule = field(default_factory=PruningSchedule)
    # Fraction of the parameters that pruning may remove (Jin prunes the linear layers only).
    prunable_fraction: float = 1.0
    # True: compute counts the sparse FLOPs, k N_avg D. False: dense kernels, k N_dense D.
    sparse_flops: bool = True
    flops_per_param_token: float = 6.0
    # Search bound on s_f when final_params is given; not a limit on a given final_sparsity.
    max_sparsity: float = MAX_FINAL_SPARSITY

    def validated(self) -> SparsityQuery:
        if (self.final_sparsity is None) == (self.final_params is None):
            raise InvalidInput("target", "give exactly one of final_sparsity or final_params")
        sparsity = None
        if self.final_sparsity is not None:
            sparsity = non_negative("final_sparsity", self.final_sparsity)
            if sparsity >= 1:
                raise InvalidInput("final_sparsity", f"must be in [0, 1), got {sparsity:g}")
        max_sparsity = positive("max_sparsity", self.max_sparsity)
        if max_sparsity >= 1:
            raise InvalidInput("max_sparsity", f"must be in (0, 1), got {max_sparsity:g}")
        return SparsityQuery(
            law=self.law,
            compute=positive("budget.flops", self.compute),
            final_sparsity=sparsity,
            final_params=None
            if self.final_params is None
            else positive("final_params", self.final_params),
            schedule=self.schedule.validated(),
            prunable_fraction=in_unit_interval("prunable_fraction", self.prunable_fraction),
            sparse_flops=bool(self.sparse_flops),
            flops_per_param_token=positive("flops_per_param_token", self.flops_per_param_token),
            max_sparsity=max_sparsity,
        )


@dataclass(frozen=True)
class DensePlan:
    """A dense model: N parameters throughout, D tokens, its predicted loss."""

    params: float
    tokens: float
    loss: float


@dataclass(frozen=True)
class SparsityPlan:
    """A sparse pre-training plan and the dense model of its deployed size on the same compute.

    `schedule` holds (fraction of training tokens, sparsity of the prunable parameters).
    `binding` holds short tags ("compute", the fixed target, "dense", "max_sparsity");
    `notes` says in words what a tag implies for the caller.
    """

    dense_params: float
    average_params: float
    final_params: float
    final_sparsity: float
    tokens: float
    loss: float
    flops: float
    schedule: tuple[tuple[float, float], ...]
    dense_same_size: DensePlan
    binding: tuple[str, ...]
    solver: str
    notes: tuple[str, ...] = ()

    @property
    def loss_gap(self) -> float:
        """Dense same-size loss minus this plan's: > 0 when pruning during training pays."""
        return self.dense_same_size.loss - self.loss


def plan_sparsity(query: SparsityQuery) -> SparsityPlan:
    """The loss-minimising sparse pre-training plan for the query's budget and target."""
    query = query.validated()
    with out_of_range_refused("the budget and target"):
        if query.final_sparsity is not None:
            return _fixed_sparsity(query, query.final_sparsity)
        assert query.final_params is not None
        return _fixed_size(query, query.final_params)


def _mean_factor(query: SparsityQuery) -> float:
    return query.schedule.mean_sparsity_factor()


def _fixed_sparsity(query: SparsityQuery, sparsity: float) -> SparsityPlan:
    p, m, k = query.prunable_fraction, _mean_factor(query), query.flops_per_param_token
    average_fraction = 1.0 - p * m * sparsity  # N_avg / N_dense
    # On dense kernels C = k N_dense D = k N_avg D / average_fraction: the law sees less budget.
    budget = query.compute if query.sparse_flops else query.compute * average_fraction
    average, tokens = closed_form.optimal_allocation(query.law, budget, k)
    dense = average / average_fraction
    notes = [] if query.sparse_flops else [_dense_kernel_note(average_fraction)]
    return _assemble(
        query,
        dense=dense,
        average=average,
        final=dense * (1.0 - p * sparsity),
        sparsity=sparsity,
        tokens=tokens,
        binding=("compute", "final_sparsity"),
        solver=CLOSED_FORM,
        notes=notes,
    )


def _fixed_size(query: SparsityQuery, final: float) -> SparsityPlan:
    k = query.flops_per_param_token
    dense_tokens = query.compute / (k * final)
    if not dense_tokens >= 1:
        raise Infeasible(
            f"a model of final_params = {final:.6g} costs {k * final:.6g} FLOPs per token even "
            f"dense, more than the budget {query.compute:.6g} allows for one token",
            field="final_params",
        )
    if query.sparse_flops:
        return _fixed_size_sparse_flops(query, final)
    return _fixed_size_dense_kernels(query, final)


def _ratio(p: float, m: float, sparsity: float) -> float:
    """R(s) = N_avg / N_final = (1 - p m s) / (1 - p s)."""
    return (1.0 - p * m * sparsity) / (1.0 - p * sparsity)


def _fixed_size_sparse_flops(query: SparsityQuery, final: float) -> SparsityPlan:
    p, m, k = query.prunable_fraction, _mean_factor(query), query.flops_per_param_token
    optimum, _ = closed_form.optimal_allocation(query.law, query.compute, k)
    highest = _ratio(p, m, query.max_sparsity)
    ratio = optimum / final
    binding = ["compute", "final_params"]
    notes: list[str] = []
    if ratio <= 1.0:
        sparsity, average = 0.0, final
        binding.append("dense")
        dense_loss = query.law.loss(optimum, query.compute / (k * optimum))
        notes.append(
            f"the compute-optimal size N_opt(C) = {optimum:.6g} is no larger than final_params "
            f"= {final:.6g}: pruning cannot help, so the plan is the dense model of the deployed "
            f"size (a dense model of N_opt(C) would reach loss {dense_loss:.6g})"
        )
    elif ratio >= highest:
        sparsity, average = query.max_sparsity, final * highest
        binding.append("max_sparsity")
        notes.append(_max_sparsity_note(query, highest * final, optimum))
    else:
        sparsity = (ratio - 1.0) / (p * (ratio - m))  # R(s) = ratio, solved for s
        average = optimum
    dense = average / (1.0 - p * m * sparsity)
    return _assemble(
        query,
        dense=dense,
        average=average,
        final=final,
        sparsity=sparsity,
        tokens=query.compute / (k * average),
        binding=tuple(binding),
        solver=CLOSED_FORM,
        notes=notes,
    )


def _dense_kernel_loss(
    query: SparsityQuery, final: float, x: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Loss at x = -ln(1 - p s) on dense kernels; q = 1 - p s = e^-x.

    1 - p m s = (1 - m) + m q, so N_avg = N_final ((1 - m)/q + m) and N_dense = N_final / q;
    D = C / (k N_dense) = C q / (k N_final).
    """
    m, k = _mean_factor(query), query.flops_per_param_token
    q = np.exp(-x)
    average = final * ((1.0 - m) / q + m)
    tokens = query.compute * q / (k * final)
    return query.law.predict(average, tokens)


def _fixed_size_dense_kernels(query: SparsityQuery, final: float) -> SparsityPlan:
    p, m = query.prunable_fraction, _mean_factor(query)
    x_max = -math.log1p(-p * query.max_sparsity)

    def objective(x: float) -> float:
        return float(_dense_kernel_loss(query, final, np.asarray(x, dtype=np.float64)))

    grid = np.linspace(0.0, x_max, SCAN_POINTS)
    values = _dense_kernel_loss(query, final, grid)
    if not np.all(np.isfinite(values)):
        raise Infeasible(
            f"the loss for final_params = {final:.6g} on this budget leaves floating-point range"
        )
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, SCAN_POINTS - 1)]
    result = minimize_scalar(
        objective, bounds=(low, high), method="bounded", options={"xatol": X_TOLERANCE}
    )
    x = float(result.x)
    # The bounded search stops xatol short of an end; an end wins when it is no worse.
    for end in (0.0, x_max):
        if objective(end) <= objective(x):
            x = end
    binding = ["compute", "final_params"]
    notes = [_dense_kernel_note(None)]
    if x == 0.0:
        sparsity = 0.0
        binding.append("dense")
        notes.append(
            f"on dense kernels the tokens pruning costs outweigh the larger average size at "
            f"final_params = {final:.6g}: the plan is the dense model of the deployed size"
        )
    elif x == x_max:
        sparsity = query.max_sparsity
        binding.append("max_sparsity")
        notes.append(_max_sparsity_note(query, final * _ratio(p, m, sparsity), None))
    else:
        sparsity = -math.expm1(-x) / p
    q = 1.0 - p * sparsity
    dense = final / q
    return _assemble(
        query,
        dense=dense,
        average=dense * (1.0 - p * m * sparsity),
        final=final,
        sparsity=sparsity,
        tokens=query.compute * q / (query.flops_per_param_token * final),
        binding=tuple(binding),
        solver=SCALAR,
        notes=notes,
    )


def _dense_kernel_note(average_fraction: float | None) -> str:
    text = "dense kernels: compute counts k N_dense D, so pruning saves no training FLOPs"
    if average_fraction is None:
        return text
    return f"{text}; the law sees the effective budget C x {average_fraction:.6g}"


def _max_sparsity_note(query: SparsityQuery, average: float, optimum: float | None) -> str:
    wanted = "" if optimum is None else f" (the compute-optimal average is {optimum:.6g})"
    return (
        f"the sparsity search stops at max_sparsity = {query.max_sparsity:g} with N_avg = "
        f"{average:.6g}{wanted}; the law is unvalidated near total pruning"
    )


def _schedule_note(schedule: PruningSchedule) -> str | None:
    if (schedule.start, schedule.end) == (JIN_START, JIN_END):
        return None
    # The law sees a schedule only through m: pruning later raises N_avg, and pruning in the
    # last steps would come out nearly free, with no recovery training. Trust it near 25 -> 75.
    return (
        f"the law was validated with pruning from {JIN_START:g} to {JIN_END:g} of training; "
        f"for {schedule.start:g} -> {schedule.end:g} it extrapolates"
    )


def _assemble(
    query: SparsityQuery,
    *,
    dense: float,
    average: float,
    final: float,
    sparsity: float,
    tokens: float,
    binding: tuple[str, ...],
    solver: str,
    notes: list[str],
) -> SparsityPlan:
    law, k = query.law, query.flops_per_param_token
    flops = k * (average if query.sparse_flops else dense) * tokens
    loss = law.loss(average, tokens)
    same_tokens = query.compute / (k * final)
    same = DensePlan(final, same_tokens, law.loss(final, same_tokens))
    numbers = (dense, average, final, tokens, loss, flops, same.tokens, same.loss)
    require_in_range("plan", numbers, N_dense=dense, N_avg=average, D=tokens)
    if tokens < 1:
        raise Infeasible(
            f"the budget {query.compute:.6g} trains the plan's N_avg = {average:.6g} on "
            f"{tokens:.3g} tokens, less than one",
            field="budget.flops",
        )
    schedule_note = _schedule_note(query.schedule)
    if schedule_note is not None:
        notes = [*notes, schedule_note]
    steps = tuple(
        (i / SCHEDULE_STEPS, query.schedule.sparsity_at(i / SCHEDULE_STEPS, sparsity))
        for i in range(SCHEDULE_STEPS + 1)
    )
    return SparsityPlan(
        dense_params=dense,
        average_params=average,
        final_params=final,
        final_sparsity=sparsity,
        tokens=tokens,
        loss=loss,
        flops=flops,
        schedule=steps,
        dense_same_size=same,
        binding=binding,
        solver=solver,
        notes=tuple(notes),
    )
