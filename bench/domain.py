"""In-process latency and accuracy of compute-optimal planning (DESIGN.md §6, §8).

(a) the closed form through `plan_for_budget`; (b) a constrained plan through the GP compiled
once; (b') the same compiled problem re-solved by cvxpy's own `Problem.solve()`; (c) the naive
way, a fresh cvxpy problem built and solved per request (exp-cone in log variables, and
cvxpy's `gp=True`, both with N, D in units of 1e9 and Clarabel at the service's tolerances);
(d) how far each solver path lands from the exact KKT answer.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cvxpy as cp

from bench.stats import Summary, jitter, summarize, time_calls
from planner.laws.chinchilla import ChinchillaLaw
from planner.planning import closed_form, compute_optimal, geometric_program
from planner.planning.compute_optimal import Caps

# Epoch AI's refit of Chinchilla (Besiroglu et al. 2024), the printed values (LAWS.md §11.2).
EPOCH_LAW = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
K = 6.0
CLOSED_FORM_BUDGET = 1e23
GP_BUDGET = 1e25
PARAMS_CAP = 1e11
UNIT = 1e9
# The service's Clarabel settings, so the naive build solves to the same tolerances.
FALLBACK_SOLVER_OPTIONS: dict[str, Any] = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "max_iter": 200,
}
SOLVER_OPTIONS: dict[str, Any] = dict(
    getattr(geometric_program, "SOLVER_OPTIONS", FALLBACK_SOLVER_OPTIONS)
)
ACCURACY_BUDGETS = (1e19, 1e21, 1e23, 1e25, 1e27)
# How far below the unconstrained optimum a cap is put, relatively, for the near-binding sweep.
MARGINS = (1e-2, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
SWEEP_BUDGETS = (1e21, 1e23, 1e25)
SWEEP_LOSSES = (2.2, 2.0, 1.9)
REPO = Path(__file__).resolve().parent.parent
# cvxpy status of every Problem.solve() the benchmark made, by path ("optimal_inaccurate" shows
# up at the service's tight tolerances); cvxpy's UserWarning about it is counted here instead.
CVXPY_STATUSES: Counter[tuple[str, str]] = Counter()


def cvxpy_solve(path: str, problem: cp.Problem, **options: Any) -> str:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(solver=cp.CLARABEL, **options, **SOLVER_OPTIONS)
    status = str(problem.status)
    CVXPY_STATUSES[(path, status)] += 1
    return status


@dataclass(frozen=True)
class DomainCounts:
    """How many calls of each kind at most, and how long each loop may run (s)."""

    closed_form: int
    compiled: int
    cvxpy_resolve: int
    naive: int
    profile: int
    max_seconds: float

    @staticmethod
    def for_mode(quick: bool) -> DomainCounts:
        if quick:
            return DomainCounts(2_000, 200, 30, 15, 100, 0.5)
        return DomainCounts(50_000, 5_000, 500, 300, 2_000, 6.0)


@dataclass(frozen=True)
class AccuracyRow:
    """|N - N_exact| / N_exact of one solver path, worst over the budgets tried."""

    path: str
    reference: str
    relative_error: float
    finished: bool
    worst_case: str = ""


@dataclass(frozen=True)
class ProfileRow:
    function: str
    calls_per_plan: float
    own_us_per_plan: float
    cumulative_us_per_plan: float


@dataclass(frozen=True)
class Profile:
    plans: int
    total_us_per_plan: float
    rows: list[ProfileRow]


@dataclass(frozen=True)
class DomainResults:
    closed_form: Summary
    compiled_gp: Summary
    cvxpy_resolve: Summary | None
    naive_exp_cone: Summary
    naive_gp: Summary
    accuracy: list[AccuracyRow]
    gp_profile: Profile
    closed_form_profile: Profile
    cvxpy_statuses: dict[str, dict[str, int]]

    @property
    def speedup(self) -> float:
        """Median naive build-and-solve (exp-cone) over median compiled-once plan."""
        return self.naive_exp_cone.median / self.compiled_gp.median


STARTED = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr, stamped with seconds since the benchmark started."""
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the naive way: a fresh cvxpy problem per request ------------------------------------------


def naive_exp_cone(
    law: ChinchillaLaw, compute: float, params_cap: float | None, k: float = K
) -> tuple[float, float]:
    """Build and solve min A/N^a + B/D^b s.t. k N D <= C, N <= cap, in x = ln(N/1e9),
    y = ln(D/1e9): the service's formulation with constants instead of Parameters."""
    x = cp.Variable()
    y = cp.Variable()
    la = math.log(law.A) - law.alpha * math.log(UNIT)
    lb = math.log(law.B) - law.beta * math.log(UNIT)
    objective = cp.Minimize(cp.exp(la - law.alpha * x) + cp.exp(lb - law.beta * y))
    constraints = [x + y <= math.log(compute / (k * UNIT * UNIT))]
    if params_cap is not None:
        constraints.append(x <= math.log(params_cap / UNIT))
    problem = cp.Problem(objective, constraints)
    status = cvxpy_solve("(c) naive exp-cone", problem)
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"naive exp-cone solve ended {status}")
    return UNIT * math.exp(float(x.value)), UNIT * math.exp(float(y.value))


def naive_gp(
    law: ChinchillaLaw, compute: float, params_cap: float | None, k: float = K
) -> tuple[float, float]:
    """The same problem as a cvxpy geometric program (gp=True), N and D in units of 1e9."""
    n = cp.Variable(pos=True)
    d = cp.Variable(pos=True)
    objective = cp.Minimize(
        law.A * UNIT**-law.alpha * n**-law.alpha + law.B * UNIT**-law.beta * d**-law.beta
    )
    constraints = [k * UNIT * UNIT * n * d <= compute]
    if params_cap is not None:
        constraints.append(n <= params_cap / UNIT)
    problem = cp.Problem(objective, constraints)
    status = cvxpy_solve("(c') naive gp=True", problem, gp=True)
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"naive gp solve ended {status}")
    return UNIT * float(n.value), UNIT * float(d.value)


# -- the compiled problem re-solved through cvxpy's Problem.solve() ----------------------------


def cvxpy_resolver() -> Callable[[float], float] | None:
    """N of the capped budget plan via a compiled-once problem and `Problem.solve()`, or None
    when the GP module no longer exposes what this needs."""
    try:
        gp = geometric_program.CompiledGP("budget", True, False)
        parameters: dict[str, Any] = dict(gp.parameters)
        parameter_values = gp.parameter_values
        problem = gp.problem
        x = gp.x
    except (AttributeError, TypeError):
        return None

    def solve(compute: float) -> float:
        n0, d0 = closed_form.optimal_allocation(EPOCH_LAW, compute, K)
        values = parameter_values(EPOCH_LAW, (n0, d0), 0.0, PARAMS_CAP, None)
        for name, parameter in parameters.items():
            parameter.value = values[name]
        status = cvxpy_solve("(b') Problem.solve()", problem)
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"Problem.solve() of the compiled GP ended {status}")
        return n0 * math.exp(float(x.value))

    return solve


# -- accuracy ----------------------------------------------------------------------------------


def relative(value: float, exact: float) -> float:
    return abs(value - exact) / abs(exact)


def accuracy() -> list[AccuracyRow]:
    law = EPOCH_LAW
    rows: list[AccuracyRow] = []
    n_exact = PARAMS_CAP

    plan = compute_optimal.plan_for_budget(law, GP_BUDGET, Caps(max_params=PARAMS_CAP))
    rows.append(
        AccuracyRow(
            "(b) plan_for_budget, max_params binding (finished on the active face)",
            "N = max_params",
            relative(plan.params, n_exact),
            True,
        )
    )
    n0, d0 = closed_form.optimal_allocation(law, GP_BUDGET, K)
    raw = geometric_program.compiled_gp("budget", True, False).solve(
        law, (n0, d0), 0.0, PARAMS_CAP, None
    )
    rows.append(
        AccuracyRow(
            "raw compiled GP, max_params binding (solver's own point)",
            "N = max_params",
            relative(raw.params, n_exact),
            False,
        )
    )

    forced = 0.0
    raw_free = 0.0
    naive_free = 0.0
    naive_gp_free = 0.0
    for budget in ACCURACY_BUDGETS:
        n_cf, d_cf = closed_form.optimal_allocation(law, budget, K)
        plan = compute_optimal.plan_for_budget(law, budget, force_gp=True)
        forced = max(forced, relative(plan.params, n_cf))
        solution = geometric_program.compiled_gp("budget", False, False).solve(
            law, (n_cf, d_cf), 0.0, None, None
        )
        raw_free = max(raw_free, relative(solution.params, n_cf))
        naive_free = max(naive_free, relative(naive_exp_cone(law, budget, None)[0], n_cf))
        naive_gp_free = max(naive_gp_free, relative(naive_gp(law, budget, None)[0], n_cf))
    span = f"closed form, worst of C = {', '.join(f'{c:.0e}' for c in ACCURACY_BUDGETS)}"
    rows.append(
        AccuracyRow(
            "plan_for_budget(force_gp=True), no cap (finished)",
            span,
            forced,
            True,
        )
    )
    rows.append(
        AccuracyRow(
            "raw compiled GP, no cap, centred at the closed form (solver's own point)",
            span,
            raw_free,
            False,
        )
    )
    rows.append(
        AccuracyRow("(c) naive exp-cone build, no cap, units of 1e9", span, naive_free, False)
    )
    rows.append(
        AccuracyRow("(c) naive gp=True build, no cap, units of 1e9", span, naive_gp_free, False)
    )
    rows.extend(near_binding_sweep(law))
    capped = naive_exp_cone(law, GP_BUDGET, PARAMS_CAP)[0]
    rows.append(
        AccuracyRow(
            "(c) naive exp-cone build, max_params binding",
            "N = max_params",
            relative(capped, n_exact),
            False,
        )
    )
    return rows


def _over_cap(plan: compute_optimal.ComputeOptimalPlan, name: str, cap: float) -> str:
    """How the finished plan relates to a cap it should sit on."""
    value = plan.params if name == "max_params" else plan.tokens
    side = "exceeds" if value > cap * (1 + 1e-12) else "within"
    return f"{name} {side} (x{value / cap:.6g}), binding {list(plan.binding)}"


def near_binding_sweep(law: ChinchillaLaw) -> list[AccuracyRow]:
    """Finished answers when one cap sits just below the unconstrained optimum.

    The exact optimum is then on the cap's face: for a budget, N = max_params or
    N = C / (k max_tokens); for a loss target with max_params, N = max_params.
    """
    worst_budget = (0.0, "")
    worst_loss = (0.0, "")
    for margin in MARGINS:
        for budget in SWEEP_BUDGETS:
            n0, d0 = closed_form.optimal_allocation(law, budget, K)
            cap_n = n0 * (1 - margin)
            plan = compute_optimal.plan_for_budget(law, budget, Caps(max_params=cap_n))
            error = relative(plan.params, cap_n)
            if error > worst_budget[0]:
                where = f"C {budget:.0e}, max_params {margin:g} below N_opt"
                worst_budget = (error, f"{where}: {_over_cap(plan, 'max_params', cap_n)}")
            cap_d = d0 * (1 - margin)
            plan = compute_optimal.plan_for_budget(law, budget, Caps(max_tokens=cap_d))
            error = relative(plan.params, budget / (K * cap_d))
            if error > worst_budget[0]:
                where = f"C {budget:.0e}, max_tokens {margin:g} below D_opt"
                worst_budget = (error, f"{where}: {_over_cap(plan, 'max_tokens', cap_d)}")
        for target in SWEEP_LOSSES:
            compute = closed_form.least_compute_for_loss(law, target, K)
            n0, _ = closed_form.optimal_allocation(law, compute, K)
            cap_n = n0 * (1 - margin)
            plan = compute_optimal.plan_for_target_loss(law, target, Caps(max_params=cap_n))
            error = relative(plan.params, cap_n)
            if error > worst_loss[0]:
                where = f"loss {target:g}, max_params {margin:g} below N_opt"
                worst_loss = (error, f"{where}: {_over_cap(plan, 'max_params', cap_n)}")
    margins = f"{min(MARGINS):g}..{max(MARGINS):g}"
    return [
        AccuracyRow(
            f"plan_for_budget, one cap {margins} (relative) below the optimum (finished)",
            "N on the cap's face, worst of " + ", ".join(f"C = {c:.0e}" for c in SWEEP_BUDGETS),
            worst_budget[0],
            True,
            worst_budget[1],
        ),
        AccuracyRow(
            f"plan_for_target_loss, max_params {margins} below the optimum (finished)",
            "N = max_params, worst of " + ", ".join(f"L = {t:g}" for t in SWEEP_LOSSES),
            worst_loss[0],
            True,
            worst_loss[1],
        ),
    ]


# -- profiles ----------------------------------------------------------------------------------


def _label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    path = Path(filename)
    marker = "site-packages"
    if marker in path.parts:
        short = "/".join(path.parts[path.parts.index(marker) + 1 :])
    else:
        try:
            short = str(path.resolve().relative_to(REPO))
        except ValueError:
            short = path.name
    return f"{short}:{line}({function})"


def profile(call: Callable[[int], object], plans: int, top: int) -> Profile:
    """cProfile of `plans` calls: the `top` functions by own time, per plan."""
    profiler = cProfile.Profile()
    profiler.enable()
    for index in range(plans):
        call(index)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    ordered = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    rows = [
        ProfileRow(
            function=_label(key),
            calls_per_plan=calls / plans,
            own_us_per_plan=own * 1e6 / plans,
            cumulative_us_per_plan=cumulative * 1e6 / plans,
        )
        for key, (_, calls, own, cumulative, _) in ordered
    ]
    return Profile(plans=plans, total_us_per_plan=total * 1e6 / plans, rows=rows)


# -- the benchmark -----------------------------------------------------------------------------


def run(counts: DomainCounts) -> DomainResults:
    law = EPOCH_LAW
    caps = Caps(max_params=PARAMS_CAP)

    def closed(index: int) -> object:
        return compute_optimal.plan_for_budget(law, CLOSED_FORM_BUDGET * jitter(index))

    def compiled(index: int) -> object:
        return compute_optimal.plan_for_budget(law, GP_BUDGET * jitter(index), caps)

    def naive(index: int) -> object:
        return naive_exp_cone(law, GP_BUDGET * jitter(index), PARAMS_CAP)

    def naive_geometric(index: int) -> object:
        return naive_gp(law, GP_BUDGET * jitter(index), PARAMS_CAP)

    log(f"(a) closed form: up to {counts.closed_form} plans")
    closed_summary = summarize(
        time_calls(closed, counts.closed_form, counts.max_seconds, warmup=200)
    )
    log(f"(b) compiled-once GP: up to {counts.compiled} plans")
    # The first call builds and compiles the shape; the warm-up keeps that out of the samples.
    compiled_summary = summarize(time_calls(compiled, counts.compiled, counts.max_seconds, 20))
    resolver = cvxpy_resolver()
    resolve_summary: Summary | None = None
    if resolver is not None:
        log(f"(b') compiled once, cvxpy Problem.solve(): up to {counts.cvxpy_resolve} solves")

        def resolve(index: int) -> object:
            return resolver(GP_BUDGET * jitter(index))

        resolve_summary = summarize(
            time_calls(resolve, counts.cvxpy_resolve, counts.max_seconds, 3)
        )
    log(f"(c) naive build per request: up to {counts.naive} solves each (exp-cone, gp=True)")
    naive_summary = summarize(time_calls(naive, counts.naive, counts.max_seconds, 3))
    naive_gp_summary = summarize(time_calls(naive_geometric, counts.naive, counts.max_seconds, 3))
    log("(d) accuracy against the exact KKT answers")
    rows = accuracy()
    log(f"cProfile of {counts.profile} compiled-once plans and closed-form plans")
    gp_profile = profile(compiled, counts.profile, top=14)
    cf_profile = profile(closed, counts.profile * 5, top=10)
    return DomainResults(
        closed_form=closed_summary,
        compiled_gp=compiled_summary,
        cvxpy_resolve=resolve_summary,
        naive_exp_cone=naive_summary,
        naive_gp=naive_gp_summary,
        accuracy=rows,
        gp_profile=gp_profile,
        closed_form_profile=cf_profile,
        cvxpy_statuses=statuses(),
    )


def statuses() -> dict[str, dict[str, int]]:
    by_path: dict[str, dict[str, int]] = {}
    for (path, status), count in sorted(CVXPY_STATUSES.items()):
        by_path.setdefault(path, {})[status] = count
    return by_path
