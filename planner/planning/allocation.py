"""Split one total compute budget across several training jobs (DESIGN.md §5 `planner allocate`).

Job i has a Chinchilla law L_i, a weight w_i, optional min/max FLOPs and optional caps on N and
D. The split minimises sum_i w_i L_i(N_i, D_i) subject to sum_i k_i N_i D_i <= C: a GP, solved
compiled once per shape (allocation_gp). Its answer is then finished exactly by water-filling,
because solvers disagree by ~1e-3 along flat directions (DESIGN.md §8):

Each job's best loss at compute C_i, V_i(C_i), is convex and decreasing, with marginal value
m_i(C) = -dV_i/dC = lambda_i / C, where lambda_i = -dV_i/d ln C is the marginal loss of whichever
of ln N, ln D can still grow (envelope theorem on its budget line):

    no cap binds:      lambda = alpha A N^-alpha = beta B D^-beta = gamma (V - E), so
                       m(C) = (gamma K / k) (C / k)^-(1 + gamma), gamma = alpha beta/(alpha+beta)
    N at max_params:   lambda = beta B D^-beta,   D = C / (k N_max)
    D at max_tokens:   lambda = alpha A N^-alpha, N = C / (k D_max)

The optimum gives every job whose min/max does not bind the same w_i m_i(C_i) = mu, the
marginal value of compute; pinned jobs sit at their bound. mu is found by brentq on ln mu.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scipy.optimize import brentq

from planner.errors import Infeasible, InvalidInput, SolverFailed
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form
from planner.planning.allocation_gp import flops_range, solve_gp
from planner.planning.compute_optimal import Caps, plan_for_budget
from planner.planning.float_range import out_of_range_refused
from planner.validation import non_negative, optional_positive, positive

MAX_JOBS = 16  # the compiled problem's recorded conic map grows as jobs^3
AGREEMENT = 1e-2  # the solver's split and dual must land this close to the exact answer
# A job whose w (L - E) is below this fraction of the total is placed by the exact finish
# alone: the solver (gap tolerance 1e-10 on an O(1) objective) left such jobs up to 2x off in
# random trials, while every job above 3e-7 agreed to 1e-2.
RESOLVABLE = 1e-6
EDGE = 1e-12  # relative distance at which a job counts as sitting on a bound


@dataclass(frozen=True)
class Job:
    name: str
    law: ChinchillaLaw
    weight: float = 1.0
    min_flops: float | None = None
    max_flops: float | None = None
    max_params: float | None = None
    max_tokens: float | None = None
    flops_per_param_token: float = 6.0

    def validated(self, field: str) -> Job:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(f"{field}.name", "must be a non-empty string")
        if not isinstance(self.law, ChinchillaLaw):
            raise InvalidInput(f"{field}.law", "must be a Chinchilla-form law")
        low = None if self.min_flops is None else non_negative(f"{field}.min_flops", self.min_flops)
        high = optional_positive(f"{field}.max_flops", self.max_flops)
        if low is not None and high is not None and low > high:
            raise InvalidInput(f"{field}.min_flops", f"{low:g} is above max_flops {high:g}")
        return replace(
            self,
            weight=positive(f"{field}.weight", self.weight),
            min_flops=low or None,  # a minimum of 0 is no minimum
            max_flops=high,
            max_params=optional_positive(f"{field}.max_params", self.max_params),
            max_tokens=optional_positive(f"{field}.max_tokens", self.max_tokens),
            flops_per_param_token=positive(
                f"{field}.flops_per_param_token", self.flops_per_param_token
            ),
        )


@dataclass(frozen=True)
class AllocationQuery:
    jobs: tuple[Job, ...]
    compute: float

    def validated(self) -> AllocationQuery:
        if not self.jobs:
            raise InvalidInput("jobs", "give at least one job")
        if len(self.jobs) > MAX_JOBS:
            raise InvalidInput("jobs", f"at most {MAX_JOBS} jobs, got {len(self.jobs)}")
        jobs = tuple(job.validated(f"jobs[{i}]") for i, job in enumerate(self.jobs))
        seen: dict[str, int] = {}
        for i, job in enumerate(jobs):
            if job.name in seen:
                raise InvalidInput(f"jobs[{i}].name", f"duplicate of jobs[{seen[job.name]}].name")
            seen[job.name] = i
        return AllocationQuery(jobs, positive("budget.flops", self.compute))


@dataclass(frozen=True)
class JobAllocation:
    name: str
    flops: float
    params: float
    tokens: float
    loss: float
    binding: tuple[str, ...]
    marginal_value: float  # w |dL*/dC| at this allocation, weighted nats per FLOP


@dataclass(frozen=True)
class Allocation:
    jobs: tuple[JobAllocation, ...]
    marginal_value: float  # mu = -d objective / d compute, weighted nats per FLOP
    objective: float  # sum_i w_i L_i
    budget_binding: bool
    solver: str


def allocate(query: AllocationQuery, check_with_gp: bool = True) -> Allocation:
    """The split of the budget minimising the weighted sum of losses.

    Water-filling answers exactly; the GP checks it unless `check_with_gp` is off (for
    re-solving one query over many ensemble rows, where the point estimate was checked)."""
    query = query.validated()
    _check_feasible(query)
    with out_of_range_refused("the budget and bounds"):
        if not check_with_gp:
            return _water_filled(query)
        return _allocate(query)


def _check_feasible(query: AllocationQuery) -> None:
    for i, job in enumerate(query.jobs):
        low, high = flops_range(job)
        if low > high:  # only the caps can put the top below min_flops (validated otherwise)
            raise Infeasible(
                f"job {job.name!r}: its caps max_params = {job.max_params:g} and max_tokens = "
                f"{job.max_tokens:g} allow at most {job.flops_per_param_token:g} N D = "
                f"{high:.6g} FLOPs, less than its min_flops {low:.6g}",
                field=f"jobs[{i}].min_flops",
            )
    minimums = math.fsum(flops_range(job)[0] for job in query.jobs)
    if minimums > query.compute:
        raise Infeasible(
            f"the jobs' minimums add up to {minimums:.6g} FLOPs, more than the total "
            f"{query.compute:.6g}",
            field="budget",
        )


def _allocate(query: AllocationQuery) -> Allocation:
    gp = solve_gp(query.jobs, query.compute)
    flops, mu, budget_binding = _water_fill(query.jobs, query.compute, gp.marginal_value)
    results = tuple(_job_result(job, c) for job, c in zip(query.jobs, flops, strict=True))
    # Only jobs carrying a visible part of the objective are placed by the solver's tolerances.
    reducible = [
        job.weight * (r.loss - job.law.E) for job, r in zip(query.jobs, results, strict=True)
    ]
    visible = [part >= RESOLVABLE * math.fsum(reducible) for part in reducible]
    for job, exact, found, seen in zip(query.jobs, flops, gp.flops, visible, strict=True):
        if seen and abs(found / exact - 1) > AGREEMENT:
            raise SolverFailed(
                f"the allocation GP gave job {job.name!r} {found:.6g} FLOPs, but the exact "
                f"split gives it {exact:.6g}; the answer is not trustworthy"
            )
    # mu is unique only when some job sits strictly inside its bounds.
    free = any(seen and not _pinned(r) for r, seen in zip(results, visible, strict=True))
    if budget_binding and free and abs(gp.marginal_value / mu - 1) > AGREEMENT:
        raise SolverFailed(
            f"the allocation GP's dual gives a marginal value {gp.marginal_value:.6g} per FLOP, "
            f"the exact split {mu:.6g}; the answer is not trustworthy"
        )
    objective = math.fsum(job.weight * r.loss for job, r in zip(query.jobs, results, strict=True))
    return Allocation(results, mu, objective, budget_binding, gp.solver)


def _water_filled(query: AllocationQuery) -> Allocation:
    flops, mu, budget_binding = _water_fill(query.jobs, query.compute, 0.0)
    results = tuple(_job_result(job, c) for job, c in zip(query.jobs, flops, strict=True))
    objective = math.fsum(job.weight * r.loss for job, r in zip(query.jobs, results, strict=True))
    return Allocation(results, mu, objective, budget_binding, "water_filling")


def _pinned(result: JobAllocation) -> bool:
    """At min/max_flops or at the corner of both caps: its compute cannot move both ways."""
    binding = set(result.binding)
    return bool(binding & {"min_flops", "max_flops"}) or {"max_params", "max_tokens"} <= binding


def _marginal(job: Job, params: float, tokens: float, flops: float) -> float:
    """w |dV/dC| on the job's face; at the N_max D_max corner, the derivative from below."""
    law = job.law
    growable = min(law.alpha * law.A * params**-law.alpha, law.beta * law.B * tokens**-law.beta)
    return float(job.weight * growable / flops)


def _flops_at(job: Job, target: float) -> float:
    """The compute C with m(C) = target, before min/max_flops (inverting the module docstring)."""
    law, k = job.law, job.flops_per_param_token
    gamma = law.alpha * law.beta / (law.alpha + law.beta)
    coefficient = gamma * closed_form.optimal_loss_coefficient(law)
    log_c = math.log(k) - (math.log(target * k) - math.log(coefficient)) / (1 + gamma)
    f = closed_form.frontier_constants(law)
    # Compute at which the free optimum reaches each cap: N_opt = G (C/k)^a, D_opt = (C/k)^b / G.
    n_edge = math.inf if job.max_params is None else (math.log(job.max_params / f.g)) / f.a
    d_edge = math.inf if job.max_tokens is None else (math.log(job.max_tokens * f.g)) / f.b
    if log_c - math.log(k) <= min(n_edge, d_edge):
        return math.exp(log_c)
    if n_edge <= d_edge:  # N stays at N_max, D grows: m = (beta B / (k N_max)) u^-(1 + beta)
        assert job.max_params is not None
        unit, slope, power = k * job.max_params, law.beta * law.B, law.beta
    else:  # D stays at D_max, N grows
        assert job.max_tokens is not None
        unit, slope, power = k * job.max_tokens, law.alpha * law.A, law.alpha
    # The caller clips to k N_max D_max (and min/max_flops).
    return math.exp(math.log(unit) - (math.log(target * unit) - math.log(slope)) / (1 + power))


def _water_fill(
    jobs: tuple[Job, ...], compute: float, guess: float
) -> tuple[list[float], float, bool]:
    """Each job's compute, mu, and whether the budget binds."""
    ranges = [flops_range(job) for job in jobs]
    if math.fsum(high for _, high in ranges) <= compute:
        return [high for _, high in ranges], 0.0, False
    if math.fsum(low for low, _ in ranges) >= compute * (1 - EDGE):
        # Every job at its minimum: one more FLOP goes to the job that values it most.
        results = [_job_result(job, low) for job, (low, _) in zip(jobs, ranges, strict=True)]
        return [low for low, _ in ranges], max(r.marginal_value for r in results), True

    def split(log_mu: float) -> list[float]:
        mu = math.exp(log_mu)
        return [
            min(max(_flops_at(job, mu / job.weight), low), high)
            for job, (low, high) in zip(jobs, ranges, strict=True)
        ]

    def excess(log_mu: float) -> float:
        return math.fsum(split(log_mu)) / compute - 1

    # The split falls as mu rises; bracket the root around the solver's dual, widening.
    centre = math.log(guess) if guess > 0 else -math.log(compute)  # mu ~ (loss) / C
    low, high, width = centre - 0.5, centre + 0.5, 1.0
    for _ in range(64):
        if excess(low) >= 0:
            break
        low, width = low - width, width * 2
    for _ in range(64):
        if excess(high) <= 0:
            break
        high, width = high + width, width * 2
    log_mu = brentq(excess, low, high, xtol=1e-14)
    flops = split(log_mu)
    # Hand the last rounding residue to the jobs strictly inside their bounds.
    inside = [i for i, (lo, hi) in enumerate(ranges) if lo < flops[i] < hi]
    if inside:
        scale = 1 + (compute - math.fsum(flops)) / math.fsum(flops[i] for i in inside)
        for i in inside:
            flops[i] *= scale
        largest = max(inside, key=lambda i: flops[i])
        flops[largest] = compute - math.fsum(f for i, f in enumerate(flops) if i != largest)
    return flops, math.exp(log_mu), True


def _job_result(job: Job, flops: float) -> JobAllocation:
    binding: list[str] = []
    if job.min_flops is not None and flops <= job.min_flops * (1 + EDGE):
        binding.append("min_flops")
    if job.max_flops is not None and flops >= job.max_flops * (1 - EDGE):
        binding.append("max_flops")
    k = job.flops_per_param_token
    if (
        job.max_params is not None
        and job.max_tokens is not None
        and flops >= k * job.max_params * job.max_tokens * (1 - EDGE)
    ):
        # The caps' corner: a single feasible point, no solve needed.
        params, tokens = job.max_params, job.max_tokens
        binding += ["max_params", "max_tokens"]
    else:
        caps = Caps(max_params=job.max_params, max_tokens=job.max_tokens)
        plan = plan_for_budget(job.law, flops, caps, k)
        params, tokens = plan.params, plan.tokens
        binding += [name for name in plan.binding if name != "compute"]
    return JobAllocation(
        name=job.name,
        flops=flops,
        params=params,
        tokens=tokens,
        loss=job.law.loss(params, tokens),
        binding=tuple(binding),
        marginal_value=_marginal(job, params, tokens, flops),
    )


def warm_up() -> None:
    """Compile the common shapes (1-4 jobs, no bounds) so the first real request is fast."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    for count in range(1, 5):
        jobs = tuple(Job(f"job{i}", law, weight=1.0 + i) for i in range(count))
        allocate(AllocationQuery(jobs, 1e22))
