"""Render one benchmark run as bench/RESULTS.md, with each DESIGN.md §8 target judged."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.accuracy import (
    CHINCHILLA_AUTO_MEAN_TARGET,
    NAMED,
    OLMO_7B_TARGET,
    AccuracyBench,
    DataSetScore,
    MethodScore,
)
from bench.batch import BatchBench
from bench.batch import section as batch_section
from bench.batch import targets as batch_targets
from bench.curves import CurvesBench
from bench.curves import section as curves_section
from bench.curves import targets as curves_targets
from bench.domain import (
    CLOSED_FORM_BUDGET,
    GP_BUDGET,
    MARGINS,
    PARAMS_CAP,
    SOLVER_OPTIONS,
    DomainResults,
    Profile,
)
from bench.fitting import FitBench
from bench.fuzz import TARGET_REQUESTS as FUZZ_TARGET_REQUESTS
from bench.fuzz import FuzzBench
from bench.load import LoadResult
from bench.machine import Machine
from bench.queries import QueryBench
from bench.replicas import ReplicasBench
from bench.replicas import section as replicas_section
from bench.scale import BOOTSTRAP_TARGET, RSS_TARGET, ScaleBench
from bench.service import FirstRequest, HandlerTimes, RoundTrips
from bench.serving import ServingBench
from bench.serving import section as serving_section
from bench.serving import targets as serving_targets
from bench.stats import Summary
from bench.targets import TargetRow, target_table, verdict

KKT_TOLERANCE = 1e-6
SPEEDUP_TARGET = 5.0
# Other processes using this many cores during a load probe make its numbers suspect.
CONTENDED_CORES = 0.25
# Accuracy data sets with at most this many held-out runs show each one's signed error.
SHOWN_TARGETS = 6
# "No worse" allows this much (relative error units) for ties reached by different paths.
TIE = 1e-6


@dataclass(frozen=True)
class BenchResults:
    quick: bool
    machine: Machine
    wall_seconds: float
    domain: DomainResults
    handler: HandlerTimes
    seconds_to_serving: float | None
    first: FirstRequest | None
    closed_trips: RoundTrips | None
    capped_trips: RoundTrips | None
    client_library: Summary | None
    loads: list[LoadResult]
    server_exit_code: int | None
    server_note: str
    load_average_at_end: tuple[float, float, float]
    fitting: FitBench | None = None
    queries: QueryBench | None = None
    accuracy: AccuracyBench | None = None
    scale: ScaleBench | None = None
    fuzz: FuzzBench | None = None
    batch: BatchBench | None = None
    serving: ServingBench | None = None
    replicas: ReplicasBench | None = None
    curves: CurvesBench | None = None


def duration(seconds: float | None) -> str:
    """A latency with a unit that keeps three significant figures readable."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if abs(seconds) < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _summary_cells(summary: Summary | None) -> str:
    if summary is None or summary.empty:
        return "n/a | n/a | n/a | n/a | 0"
    return (
        f"{duration(summary.median)} | {duration(summary.p90)} | {duration(summary.p99)} | "
        f"{duration(summary.mean)} | {summary.count}"
    )


def _below(value: float | None, limit: float) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return value < limit


def contention(load: LoadResult) -> str:
    """A warning when other processes took a noticeable share of the cores during a probe."""
    other = load.other_cpu
    if other is None or load.elapsed <= 0 or other / load.elapsed < CONTENDED_CORES:
        return ""
    return f" (contended: other processes used {other / load.elapsed:.1f} cores meanwhile)"


def targets(results: BenchResults) -> list[TargetRow]:
    domain = results.domain
    rows: list[TargetRow] = []
    closed = results.closed_trips
    capped = results.capped_trips
    handler = results.handler

    estimate = None if closed is None else closed.server_side_estimate
    rows.append(
        TargetRow(
            "`PlanComputeOptimal`, closed form, server-side (round trip − health round trip)",
            "p50 < 0.2 ms",
            duration(estimate),
            _below(estimate, 0.2e-3),
        )
    )
    handler_closed = None if handler.closed_form is None else handler.closed_form.median
    rows.append(
        TargetRow(
            "`PlanComputeOptimal`, closed form, handler coroutine in-process",
            "p50 < 0.2 ms",
            duration(handler_closed),
            _below(handler_closed, 0.2e-3),
        )
    )
    estimate = None if capped is None else capped.server_side_estimate
    rows.append(
        TargetRow(
            "constrained GP query, server-side (round trip − health round trip)",
            "p50 < 2 ms",
            duration(estimate),
            _below(estimate, 2e-3),
        )
    )
    handler_capped = None if handler.capped is None else handler.capped.median
    rows.append(
        TargetRow(
            "constrained GP query, handler coroutine in-process (incl. solver-pool hop)",
            "p50 < 2 ms",
            duration(handler_capped),
            _below(handler_capped, 2e-3),
        )
    )
    rows.append(
        TargetRow(
            "constrained GP: compiled once (b) vs cvxpy problem built per request (c)",
            f">= {SPEEDUP_TARGET:g}x faster",
            f"{domain.speedup:.1f}x (medians, same run)",
            domain.speedup >= SPEEDUP_TARGET,
        )
    )
    worst = max((row for row in domain.accuracy if row.finished), key=lambda r: r.relative_error)
    rows.append(
        TargetRow(
            "constrained GP: N of the finished answer vs the exact KKT answer",
            f"relative error <= {KKT_TOLERANCE:g}",
            f"{worst.relative_error:.2g} (worst finished path in §1d"
            + (f": {worst.worst_case})" if worst.worst_case else ")"),
            worst.relative_error <= KKT_TOLERANCE,
        )
    )
    limits = {"closed-form mix": (2_000.0, 50e-3), "GP-only mix": (600.0, 100e-3)}
    for load in results.loads:
        qps_floor, p99_cap = limits[load.name]
        met = (
            load.qps >= qps_floor
            and load.latency.p99 < p99_cap
            and load.error_count == 0
            and load.wrong_path == 0
            and load.completed > 0
        )
        rows.append(
            TargetRow(
                f"sustained load, {load.settings.concurrency} concurrent callers, {load.name}",
                f">= {qps_floor:,.0f} queries/s, p99 < {p99_cap * 1e3:g} ms, 0 errors",
                f"{load.qps:,.0f} queries/s, p99 {duration(load.latency.p99)}, "
                f"{load.error_count} errors{contention(load)}",
                met,
            )
        )
    first = results.first
    rows.append(
        TargetRow(
            "first request after start (a GP plan sent as soon as health is SERVING)",
            "answered within its deadline",
            "n/a"
            if first is None
            else f"{first.status} in {duration(first.latency)} (deadline {first.deadline:g} s)",
            None if first is None else first.status == "OK" and first.latency < first.deadline,
        )
    )
    fit = results.fitting
    if fit is None:
        for what, target in (
            ("fit of the 240-point Chinchilla set (VPNLS)", "< 0.5 s, >= 20x faster than L-BFGS"),
            ("200-sample bootstrap of that fit", "< 30 s on 2 cores"),
        ):
            rows.append(TargetRow(what, target, "not measured", None))
        return rows
    ratio = fit.recipe_seconds / fit.vpnls_seconds
    no_worse = fit.vpnls_squared_error <= min(fit.huber_squared_error, fit.recipe_squared_error)
    recipe = f"{duration(fit.recipe_seconds)}" + (
        f" (extrapolated from {fit.recipe_starts} starts)" if fit.recipe_extrapolated else ""
    )
    rows.append(
        TargetRow(
            "fit of the 240-point Chinchilla set (VPNLS)",
            "< 0.5 s, objective <= the 4,500-start L-BFGS recipe, >= 20x faster than it",
            f"{duration(fit.vpnls_seconds)} vs recipe {recipe}: {ratio:.0f}x; squared error "
            f"{fit.vpnls_squared_error:.6g} vs recipe {fit.recipe_squared_error:.6g} "
            f"(vectorised Huber: {duration(fit.huber_seconds)}, {fit.huber_squared_error:.6g})",
            fit.vpnls_seconds < 0.5 and ratio >= 20 and no_worse,
        )
    )
    rows.append(
        TargetRow(
            f"{fit.bootstrap_resamples}-sample bootstrap of that fit",
            "< 30 s on 2 cores (200 samples)",
            f"{duration(fit.bootstrap_seconds)} on {fit.bootstrap_processes} processes",
            fit.bootstrap_seconds < 30 if fit.bootstrap_resamples >= 200 else None,
        )
    )
    return rows


def _profile_table(profile: Profile) -> list[str]:
    lines = [
        f"{profile.plans} plans, {profile.total_us_per_plan:.1f} µs per plan under the profiler "
        "(cProfile inflates Python-heavy code; compare rows with each other, not with §1).",
        "",
        "| function | calls/plan | own µs/plan | cumulative µs/plan |",
        "|---|---:|---:|---:|",
    ]
    for row in profile.rows:
        lines.append(
            f"| `{row.function}` | {row.calls_per_plan:.3g} | {row.own_us_per_plan:.1f} | "
            f"{row.cumulative_us_per_plan:.1f} |"
        )
    return lines


def _header(
    quick: bool,
    m: Machine,
    wall_seconds: float,
    load_at_end: tuple[float, float, float],
    command: str = "python -m bench.run",
) -> list[str]:
    """Title, how the file was written, and the machine table."""
    out: list[str] = []
    add = out.append
    add("# Benchmark results")
    add("")
    add(
        f"Written by `{command}"
        + (" --quick" if quick else "")
        + "`"
        + (" (`make bench`)" if command == "python -m bench.run" else "")
        + "; every number below comes from the one run described here. "
        "The machine is shared and noisy: compare speeds as ratios within this run, not with "
        "other runs or machines."
    )
    if quick:
        add("")
        add("**Quick mode**: a smoke test with few samples; do not quote these numbers.")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| date | {m.utc_time} |")
    add(f"| CPU | {m.cpu_model} |")
    add(f"| cores | {m.logical_cpus} logical, {m.usable_cpus} usable by this process |")
    add(
        f"| load average (1, 5, 15 min) | at start {', '.join(f'{x:.2f}' for x in m.load_average)}"
        f"; at end {', '.join(f'{x:.2f}' for x in load_at_end)} |"
    )
    add(f"| Python | {m.python} |")
    add(f"| platform | {m.platform} |")
    add(f"| packages | {', '.join(f'{k} {v}' for k, v in m.packages.items())} |")
    add(f"| commit | {m.commit} |")
    add(f"| benchmark wall time | {wall_seconds:.0f} s |")
    add("")
    return out


def render(results: BenchResults) -> str:
    d = results.domain
    out = _header(results.quick, results.machine, results.wall_seconds, results.load_average_at_end)
    add = out.append
    add("## DESIGN.md §8 targets")
    add("")
    add("| what | target | measured | verdict |")
    add("|---|---|---|---|")
    for row in targets(results):
        add(f"| {row.what} | {row.target} | {row.measured} | {verdict(row.met)} |")
    add("")
    add(
        "*Server-side* has two readings. The server exposes no timing of its own, so the first "
        "is **derived**: the median PlanComputeOptimal round trip minus the median round trip "
        "of a `grpc.health.v1.Health/Check` on the same channel, interleaved call by call in "
        "the same run (§2). The second times the `PlanComputeOptimal` handler coroutine "
        "directly, in-process, on a server assembled by `server.app.start` (store, warm "
        "solver pool) without the gRPC transport."
    )
    add("")

    add("## 1. Domain level, in-process")
    add("")
    add(
        "Law: Epoch 2024 Chinchilla refit (E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta "
        f"0.3658), k = 6. Every call varies C slightly so nothing can be answered by value "
        f"from a cache. Clarabel options everywhere: `{SOLVER_OPTIONS}`."
    )
    add("")
    add("| path | p50 | p90 | p99 | mean | calls |")
    add("|---|---:|---:|---:|---:|---:|")
    add(
        f"| (a) closed form, `plan_for_budget(law, ~{CLOSED_FORM_BUDGET:.0e})`, no caps | "
        f"{_summary_cells(d.closed_form)} |"
    )
    add(
        f"| (b) compiled-once GP, `plan_for_budget(law, ~{GP_BUDGET:.0e}, "
        f"Caps(max_params={PARAMS_CAP:.0e}))` | {_summary_cells(d.compiled_gp)} |"
    )
    add(
        "| (b') same compiled problem, re-solved by cvxpy `Problem.solve()` (no plan finish) | "
        f"{_summary_cells(d.cvxpy_resolve)} |"
    )
    add(
        "| (c) naive: fresh cvxpy exp-cone problem per request (log variables, units of 1e9) | "
        f"{_summary_cells(d.naive_exp_cone)} |"
    )
    add(
        "| (c') naive: fresh cvxpy `gp=True` problem per request (units of 1e9) | "
        f"{_summary_cells(d.naive_gp)} |"
    )
    add("")
    add(
        f"Ratio (c) / (b) of medians: **{d.speedup:.1f}x**; (c') / (b): "
        f"{d.naive_gp.median / d.compiled_gp.median:.1f}x"
        + (
            ""
            if d.cvxpy_resolve is None
            else f"; (b') / (b): {d.cvxpy_resolve.median / d.compiled_gp.median:.1f}x"
        )
        + f"; (b) / (a): {d.compiled_gp.median / d.closed_form.median:.0f}x."
    )
    add("")
    if d.cvxpy_statuses:
        add(
            "cvxpy's status over every `Problem.solve()` above (timed, warm-up and accuracy "
            "calls): "
            + "; ".join(
                f"{path}: " + ", ".join(f"{status} {n}" for status, n in counts.items())
                for path, counts in d.cvxpy_statuses.items()
            )
            + "."
        )
        add("")
    add("### 1d. Accuracy of N against the exact KKT answer")
    add("")
    add(
        "*Finished* answers are what `plan_for_budget` returns (the exact optimum on the face "
        "the caps leave, cross-checked against the solver's point); *raw* is the solver's own "
        "point."
    )
    add("")
    add("| path | reference | max relative error in N | kind | worst case |")
    add("|---|---|---:|---|---|")
    for accuracy in d.accuracy:
        kind = "finished" if accuracy.finished else "raw solver"
        add(
            f"| {accuracy.path} | {accuracy.reference} | {accuracy.relative_error:.2e} | "
            f"{kind} | {accuracy.worst_case} |"
        )
    add("")
    add(
        "The two sweep rows put one cap a relative margin below the unconstrained optimum, "
        f"for margins {', '.join(f'{m:g}' for m in MARGINS)}; the exact optimum then lies on "
        "that cap. The worst-case column names the case with the largest error and whether "
        "the returned plan stays within the cap."
    )
    add("")
    add("### 1e. Where the time goes")
    add("")
    add("Compiled-once constrained plan (b), top functions by own time:")
    add("")
    out.extend(_profile_table(d.gp_profile))
    add("")
    add("Closed-form plan (a), top functions by own time:")
    add("")
    out.extend(_profile_table(d.closed_form_profile))
    add("")

    add("## 2. PlanComputeOptimal over gRPC")
    add("")
    if results.server_note:
        add(results.server_note)
        add("")
    add(
        "A `planner-server` subprocess with default settings (no PLANNER_* variables besides "
        "the listen address and database URL) on 127.0.0.1 with a fresh SQLite database, "
        "family `chinchilla-epoch-2024` from the shipped catalogue. Round trips use a "
        "synchronous stub on one channel; each plan call is paired with a health Check whose "
        "order alternates."
        + (
            ""
            if results.seconds_to_serving is None
            else f" Start to SERVING took {results.seconds_to_serving:.1f} s."
        )
    )
    add("")
    add("| call | p50 | p90 | p99 | mean | calls |")
    add("|---|---:|---:|---:|---:|---:|")
    for trips, label in (
        (results.closed_trips, "closed form (C ~1e23 x0.5..1.5)"),
        (results.capped_trips, "constrained (C ~1e25, max_params 1e11 binding)"),
    ):
        if trips is None:
            continue
        add(f"| (i/ii) {label}: plan round trip | {_summary_cells(trips.plan)} |")
        add(f"| same run: health Check round trip | {_summary_cells(trips.health)} |")
    if results.client_library is not None:
        add(
            "| closed form via `clients.client.PlannerClient` (typed results) | "
            f"{_summary_cells(results.client_library)} |"
        )
    add("")
    for trips in (results.closed_trips, results.capped_trips):
        if trips is None:
            continue
        add(
            f"- {trips.name}: derived server-side time (p50 plan − p50 health) "
            f"**{duration(trips.server_side_estimate)}**; answers on an unexpected solver "
            f"path: {trips.wrong_path}; errors: {trips.errors or 0}."
        )
    h = results.handler
    if h.closed_form is not None and h.capped is not None:
        shown = ", ".join(f"{k} = {v}" for k, v in h.settings.items())
        hop = h.capped.median - d.compiled_gp.median
        add(
            f"- handler coroutine in-process (default settings: {shown}): closed "
            f"form p50 {duration(h.closed_form.median)} / p90 {duration(h.closed_form.p90)} / "
            f"p99 {duration(h.closed_form.p99)} ({h.closed_form.count} calls); constrained p50 "
            f"{duration(h.capped.median)} / p90 {duration(h.capped.p90)} / p99 "
            f"{duration(h.capped.p99)} ({h.capped.count} calls). The constrained handler p50 "
            f"minus the in-process plan (b) p50 is {duration(hop)}: the cost of sending the "
            "solve to a solver process and back."
        )
    else:
        add(f"- handler coroutine in-process: {h.note}")
    if results.first is not None:
        f = results.first
        add(
            f"- first request after SERVING (a GP plan, deadline {f.deadline:g} s): {f.status} "
            f"in {duration(f.latency)}."
        )
    add("")

    add("## 3. Sustained load (grpc.aio, loopback)")
    add("")
    if results.loads:
        s = results.loads[0].settings
        add(
            f"{s.concurrency} concurrent callers over {s.channels} channels in one client "
            f"process, each request distinct, deadline {s.deadline:g} s; after "
            f"{s.warmup_seconds:g} s of unrecorded warm-up, a probe stops at "
            f"{s.max_requests:,} requests or {s.max_seconds:g} s. The client shares the "
            "machine's cores with the server; CPU columns are CPU-seconds per wall-second "
            "(1.0 = one core busy) of the client process, of the server's process tree "
            "(server + solver workers) and of everything else on the machine (from /proc/stat: "
            "other users of the shared cores during the probe)."
        )
        add("")
        add(
            "| mix | queries/s | p50 | p90 | p99 | completed | errors | wrong path | "
            "stopped by | client CPU | server CPU | other CPU |"
        )
        add("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for load in results.loads:
            other_cpu = "n/a" if load.other_cpu is None else f"{load.other_cpu / load.elapsed:.2f}"
            server_cpu = (
                "n/a" if load.server_cpu is None else f"{load.server_cpu / load.elapsed:.2f}"
            )
            add(
                f"| {load.name} | {load.qps:,.0f} | {duration(load.latency.median)} | "
                f"{duration(load.latency.p90)} | {duration(load.latency.p99)} | "
                f"{load.completed:,} | {load.error_count}"
                f"{' ' + str(load.errors) if load.errors else ''} | {load.wrong_path} | "
                f"{load.stopped_by} ({load.elapsed:.1f} s) | "
                f"{load.client_cpu / load.elapsed:.2f} | {server_cpu} | {other_cpu} |"
            )
        add("")
        add(
            "Mixes: *closed-form* — budgets spread over 1e21..1e25 FLOPs, no caps; *GP-only* "
            "— budgets over 1e23..1e25 FLOPs, alternately max_params or max_tokens set to "
            "30-70% of the unconstrained optimum, so every request needs a GP solve."
        )
    else:
        add("Not run.")
    add("")
    if results.server_exit_code is not None:
        add(f"The server exited with code {results.server_exit_code} after SIGTERM.")
        add("")
    if results.queries is not None:
        out.extend(_queries_section(results.queries))
    if results.accuracy is not None:
        out.extend(accuracy_section(results.accuracy))
    if results.scale is not None:
        out.extend(scale_section(results.scale))
    if results.fuzz is not None:
        out.extend(fuzz_section(results.fuzz))
    if results.batch is not None:
        out.extend(batch_section(results.batch))
    if results.serving is not None:
        out.extend(serving_section(results.serving))
    if results.replicas is not None:
        out.extend(replicas_section(results.replicas))
    if results.curves is not None:
        out.extend(curves_section(results.curves))
    return "\n".join(out)


def render_sections(
    quick: bool,
    machine: Machine,
    wall_seconds: float,
    load_at_end: tuple[float, float, float],
    command: str,
    accuracy: AccuracyBench | None,
    scale: ScaleBench | None,
    fuzz: FuzzBench | None = None,
    batch: BatchBench | None = None,
    serving: ServingBench | None = None,
    replicas: ReplicasBench | None = None,
    curves: CurvesBench | None = None,
) -> str:
    """A report of only the sections a `--only` run measured (§5, §6, fuzz, ...)."""
    out = _header(quick, machine, wall_seconds, load_at_end, command)
    if accuracy is not None:
        out.extend(accuracy_section(accuracy))
    if scale is not None:
        out.extend(scale_section(scale))
    if fuzz is not None:
        out.extend(fuzz_section(fuzz))
    if batch is not None:
        out.extend(batch_section(batch))
    if serving is not None:
        out.extend(serving_section(serving))
    if replicas is not None:
        out.extend(replicas_section(replicas))
    if curves is not None:
        out.extend(curves_section(curves))
    return "\n".join(out)


def issue_targets(accuracy: AccuracyBench | None, scale: ScaleBench | None) -> list[TargetRow]:
    """The issue's targets for §5 and §6 (judged in their sections)."""
    return (accuracy_targets(accuracy) if accuracy else []) + (
        scale_targets(scale) if scale else []
    )


def _queries_section(bench: QueryBench) -> list[str]:
    out = ["## 4. Planning queries, in-process", ""]
    out.append(
        "Each query through its domain function (what a solver worker runs), every call with "
        "slightly different numbers. The GP-backed queries are also built and solved as a fresh "
        "cvxpy `gp=True` problem per request (N, D in units of 1e9), the naive way. Bands: "
        "the p5/p50/p95 a plan carries when its law has a 200-row bootstrap ensemble, each row "
        "solved on its own."
    )
    out.append("")
    out.append("| query | path | p50 | p90 | p99 | mean | calls |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for row in bench.rows:
        out.append(f"| {row.query} | {row.path} | {_summary_cells(row.latency)} |")
    out.append("")
    for query, compiled, naive in bench.ratios:
        out.append(
            f"- {query}: built per request / compiled once, ratio of medians "
            f"**{naive / compiled:.1f}x** ({duration(naive)} vs {duration(compiled)})."
        )
    out.append("")
    return out


def _pct(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def accuracy_targets(bench: AccuracyBench) -> list[TargetRow]:
    rows: list[TargetRow] = []
    for data_set in bench.sets:
        auto = data_set.method("auto")
        best = data_set.best_single(tuple(spec.label for spec in NAMED))
        overall = data_set.best_single()
        if auto is None or best is None or overall is None:
            continue
        met = None if not auto.scored else auto.mean_abs <= best.mean_abs + TIE
        rows.append(
            TargetRow(
                f"{data_set.name}: auto vs the best single method",
                "auto's mean \\|error\\| no worse than the best of vpnls, huber, huber+tied, "
                "vpnls+tied",
                f"auto {_pct(auto.mean_abs)} (chose {auto.chosen or 'n/a'}) vs {best.label} "
                f"{_pct(best.mean_abs)}"
                + (
                    f"; best of all auto's candidates: {overall.label} {_pct(overall.mean_abs)}"
                    if overall is not best
                    else ""
                ),
                met,
            )
        )
        if data_set.key.startswith("olmo") and auto.scored:
            error = auto.errors[data_set.target_labels.index("7B-4T")]
            rows.append(
                TargetRow(
                    f"{data_set.name}: 7B-4T C4 loss predicted by auto",
                    f"within {OLMO_7B_TARGET:.1%}",
                    f"{_pct(error, signed=True)}",
                    abs(error) <= OLMO_7B_TARGET,
                )
            )
        if data_set.key == "chinchilla" and auto.scored:
            rows.append(
                TargetRow(
                    "Chinchilla backtest below 1e21 FLOPs, auto",
                    f"mean \\|error\\| <= {CHINCHILLA_AUTO_MEAN_TARGET:.1%}",
                    _pct(auto.mean_abs),
                    auto.mean_abs <= CHINCHILLA_AUTO_MEAN_TARGET,
                )
            )
    return rows


def scale_targets(bench: ScaleBench) -> list[TargetRow]:
    rows: list[TargetRow] = []
    fits = [row for row in bench.memory if row.label != "baseline"]
    if fits:
        worst = max(fits, key=lambda row: row.peak_rss_bytes)
        failed = [row.label for row in fits if row.failure and not row.stopped]
        stopped = [row.label for row in fits if row.stopped]
        met: bool | None = worst.peak_rss_bytes < RSS_TARGET and not failed
        if met and stopped:
            met = None  # below the target so far, but a fit did not finish
        rows.append(
            TargetRow(
                f"peak RSS of fitting {worst.runs:,} runs, every method (fresh process each)",
                f"< {_mib(RSS_TARGET)}",
                f"largest {_mib(worst.peak_rss_bytes)} ({worst.label})"
                + (f"; failed: {', '.join(failed)}" if failed else "")
                + (f"; stopped at the deadline: {', '.join(stopped)}" if stopped else ""),
                None if bench.quick else met,
            )
        )
    for boot in bench.bootstraps:
        rows.append(
            TargetRow(
                f"{boot.resamples}-resample {boot.method} bootstrap of {boot.runs:,} runs",
                f"< {BOOTSTRAP_TARGET:g} s on {boot.parallel.processes} worker processes",
                f"{duration(boot.parallel.seconds)} ({boot.speedup:.2f}x the 1-worker "
                f"{duration(boot.single.seconds)}; other processes kept "
                f"{_cores(boot.parallel.other_cores)} cores busy meanwhile)",
                None if bench.quick else boot.parallel.seconds < BOOTSTRAP_TARGET,
            )
        )
    return rows


def _method_cells(method: MethodScore, shown: bool, count: int) -> str:
    if not method.scored:
        blanks = " | ".join(["—"] * count) + " | " if shown else ""
        return f"— | — | {blanks}"
    cells = f"{_pct(method.mean_abs)} | {_pct(method.max_abs)} | "
    if shown:
        cells += " | ".join(_pct(e, signed=True) for e in method.errors) + " | "
    return cells


def _data_set_section(letter: str, data_set: DataSetScore) -> list[str]:
    out = [f"### 5{letter}. {data_set.name}", ""]
    out.append(
        f"{data_set.setup} Fitted on {data_set.train_rows:,} rows ({data_set.train_runs} runs); "
        f"{len(data_set.target_labels)} held out."
    )
    out.append("")
    shown = len(data_set.target_labels) <= SHOWN_TARGETS
    header = "| method | mean \\|error\\| | max \\|error\\| | "
    rule = "|---|---:|---:|"
    if shown:
        header += " | ".join(
            f"{label} (L {loss:.4f})"
            for label, loss in zip(data_set.target_labels, data_set.observed, strict=True)
        )
        header += " | "
        rule += "---:|" * len(data_set.target_labels)
    out.append(header + "fit time | notes |")
    out.append(rule + "---:|---|")
    count = len(data_set.target_labels)
    for method in data_set.methods:
        notes = method.note
        if method.chosen:
            notes = f"chose **{method.chosen}**"
            if method.candidates:
                notes += "; rolling-origin means: " + ", ".join(
                    f"{label} {_pct(mean)}" for label, mean in method.candidates
                )
        out.append(
            f"| {method.label} | {_method_cells(method, shown, count)}"
            f"{duration(method.seconds) if not method.note else '—'} | {notes} |"
        )
    for ref in data_set.references:
        where = f" ({ref.elsewhere})" if ref.elsewhere else ""
        cells = f"{_pct(ref.mean_abs)}{where} | {_pct(ref.max_abs)}{where} | "
        if shown:
            per_target = not ref.elsewhere and len(ref.errors) == count
            cells += (
                " | ".join(_pct(e, signed=True) for e in ref.errors)
                if per_target
                else " | ".join(["—"] * count)
            )
            cells += " | "
        out.append(f"| *{ref.label}* | {cells}— | {ref.note or 'published'} |")
    out.append("")
    return out


def accuracy_section(bench: AccuracyBench) -> list[str]:
    out = ["## 5. Accuracy on published ladders", ""]
    out.append(
        "Each data set is fitted through the request path (`FitJob(runs, form, method, "
        "options, checkpoints, compute).validated().fit()`) by every method: vpnls, huber, "
        "huber and vpnls with tied exponents (alpha = beta), huber with an over-estimate "
        "penalty of 2 or 5 (tied or not: auto's other candidates), and auto (the candidate "
        "with the lowest rolling-origin held-out error on the training runs). The options "
        "apply to the Chinchilla form only. Error = predicted / "
        "observed − 1 on each held-out run. Published fits saw the held-out runs, so their "
        "rows are in-sample (a floor for a backtest, not a competitor); the OLMo authors' "
        "figure is their own extrapolation, to 13B-5T, which shared/data does not hold. "
        "Fit times are wall times on the shared machine (auto fits each of its 8 candidates on "
        "every rolling-origin fold, then the winner on all the training runs)."
    )
    out.append("")
    out += target_table(accuracy_targets(bench))
    out.append("")
    for index, data_set in enumerate(bench.sets):
        out += _data_set_section("abcdefgh"[index], data_set)
    return out


def scale_section(bench: ScaleBench) -> list[str]:
    out = ["## 6. Fitting at scale", ""]
    out += target_table(scale_targets(bench))
    out.append("")
    runs = bench.memory[0].runs if bench.memory else 0
    out.append(
        f"(a) Peak resident memory of fitting {runs:,} synthetic runs (Epoch's surface, 1% "
        "log-normal noise, N over 1e7..1e10, 2..200 tokens per parameter) through `FitJob`, "
        "each method in a fresh `python -m bench.scale --child` process with BLAS on one thread "
        "(as in the server's solver processes); the peak is the "
        "kernel's `ru_maxrss` of that child, read by `os.wait4` as it exits. *baseline* builds "
        "the runs and imports the fitters without fitting."
    )
    out.append("")
    out.append("| method | runs | peak RSS | above baseline | fit time | child CPU time | notes |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    base = next((r.peak_rss_bytes for r in bench.memory if r.label == "baseline"), 0)
    for row in bench.memory:
        above = "—" if row.label == "baseline" else _mib(row.peak_rss_bytes - base)
        seconds = "—" if row.label == "baseline" else duration(row.seconds)
        notes = row.failure or (f"chose {row.chosen}" if row.chosen else "")
        out.append(
            f"| {row.label} | {row.runs:,} | {_mib(row.peak_rss_bytes)} | {above} | "
            f"{seconds} | {duration(row.cpu_seconds)} | {notes} |"
        )
    out.append("")
    out.append(
        "(b) Bootstrap: resamples of the runs (drawn with replacement) split into chunks as "
        "`server/fitting_rpcs.py` splits them (min(resamples, max(4 x processes, resamples // "
        "10)) chunks), each chunk one `FitJob.bootstrap` call refining from the full fit, on a "
        "`ProcessPoolExecutor` (forkserver, as the server's pool) of 2 workers and then of 1 "
        "worker, both started, warmed and pinned to one BLAS thread (threadpoolctl) before the "
        "clock starts. The ratio shows the parallel gain "
        "only when the machine's two cores are free: the column of other processes' cores "
        "(from /proc/stat, as in §3) says how much of them other work took meanwhile."
    )
    out.append("")
    out.append(
        "| method | runs | resamples | chunks | 2 workers | 1 worker | 1 worker / 2 workers "
        "| failed resamples | other processes' cores (2 workers / 1 worker) | BLAS threads "
        "per worker |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for boot in bench.bootstraps:
        single = duration(boot.single.seconds)
        out.append(
            f"| {boot.method} | {boot.runs:,} | {boot.resamples} | {boot.chunks} | "
            f"{duration(boot.parallel.seconds)} | {single} | "
            f"{boot.speedup:.2f}x | {boot.parallel.failed} | "
            f"{_cores(boot.parallel.other_cores)} / {_cores(boot.single.other_cores)} | "
            f"{boot.parallel.blas_threads} |"
        )
    out.append("")
    return out


def serving_target_rows(bench: ServingBench) -> list[TargetRow]:
    """Issue 10's serving benchmarks: plans beside fits, deadlines, shutdown, unread answers
    (judged in bench/serving.py)."""
    return [TargetRow(t.what, t.target, t.measured, t.met) for t in serving_targets(bench)]


def curves_target_rows(bench: CurvesBench) -> list[TargetRow]:
    """Issue 12: the curve fit, prediction and schedule search times (judged in
    bench/curves.py)."""
    return [TargetRow(t.what, t.target, t.measured, t.met) for t in curves_targets(bench)]


def batch_target_rows(bench: BatchBench) -> list[TargetRow]:
    """Issue 10, item 8: plans/s of one batch call (judged in bench/batch.py)."""
    return [TargetRow(t.what, t.target, t.measured, t.met) for t in batch_targets(bench)]


def fuzz_targets(bench: FuzzBench) -> list[TargetRow]:
    """Issue 10, item 7: 10,000 fuzzed requests, none answered INTERNAL or UNKNOWN."""
    quick = bench.settings.requests < FUZZ_TARGET_REQUESTS
    return [
        TargetRow(
            "fuzzed requests sent",
            f"≥ {FUZZ_TARGET_REQUESTS:,}",
            f"{bench.requests:,}",
            None if quick else bench.requests >= FUZZ_TARGET_REQUESTS,
        ),
        TargetRow(
            "INTERNAL or UNKNOWN answers (fuzzed requests and undecodable bytes)",
            "0",
            f"{bench.forbidden_count}",
            bench.forbidden_count == 0,
        ),
        TargetRow(
            "server health after the fuzzing",
            "SERVING",
            bench.health_after,
            bench.health_after == "SERVING",
        ),
    ]


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {count:,}" for code, count in codes.items()) or "none"


def fuzz_section(bench: FuzzBench) -> list[str]:
    s = bench.settings
    out = ["## Fuzz: every RPC through a real server", ""]
    out += target_table(fuzz_targets(bench))
    out.append("")
    out.append(
        f"`bench/fuzz.py`: {bench.requests:,} requests drawn (derandomized, in "
        f"{bench.draw_seconds:.0f} s) from the hypothesis strategies of "
        "`tests/service/fuzz_requests.py`, which `make test` samples 600 of: every field of "
        "each request message optional, NaN / ±inf / huge / subnormal numbers, odd and "
        "non-ASCII strings, unknown enum values, nested options, over the "
        f"{bench.rpcs} RPCs of the service descriptor but DeleteFamily. A dedicated "
        "`planner-server` (default settings, fresh SQLite database, family `fuzz` seeded with "
        f"7 runs) answers {s.callers} threads sharing {s.channels} channels; deadline "
        f"{s.deadline:g} s per call, server streams read to their end within it. Then "
        f"{bench.undecodable_sent} random byte strings (every other one led by a tag of the "
        "nonexistent wire type 7) go to each RPC in turn with identity serializers. Resident "
        "memory is VmRSS from /proc; the tree adds the solver worker processes."
    )
    out.append("")
    out.append("| | |")
    out.append("|---|---|")
    out.append(
        f"| fuzzed requests | {bench.requests:,} in {bench.seconds:.1f} s: "
        f"**{bench.rate:,.0f} requests/s** |"
    )
    out.append(
        f"| round trip | p50 {duration(bench.latency.median)}, p90 "
        f"{duration(bench.latency.p90)}, p99 {duration(bench.latency.p99)}, mean "
        f"{duration(bench.latency.mean)}; slowest "
        + ", ".join(f"{rpc} {duration(seconds)}" for rpc, seconds, _ in bench.slowest)
        + " |"
    )
    out.append(f"| status codes | {_codes(bench.codes)} |")
    out.append(f"| INTERNAL or UNKNOWN | **{bench.forbidden_count}** |")
    first = bench.memory[0][1].server
    for label, sample in bench.memory:
        growth = (
            ""
            if first is None or sample.server is None or sample is bench.memory[0][1]
            else f" ({'+' if sample.server >= first else '−'}{_mib(abs(sample.server - first))})"
        )
        server = "n/a" if sample.server is None else _mib(sample.server)
        tree = "n/a" if sample.tree is None else _mib(sample.tree)
        out.append(f"| server RSS {label} | {server}{growth}; process tree {tree} |")
    refused = bench.undecodable_refused
    per = bench.undecodable_log_lines / refused if refused else math.nan
    out.append(
        f"| undecodable bytes | {bench.undecodable_sent} sent: {_codes(bench.undecodable_codes)}; "
        f"{refused} refused as not a valid message; server log lines meanwhile "
        f"{bench.undecodable_log_lines} ({per:.3g} per refused request) |"
    )
    out.append(
        f"| server log | {bench.fuzz_log_lines:,} lines during the fuzzed requests; "
        f"{bench.tracebacks} tracebacks in the whole run |"
    )
    out.append(f"| health after | {bench.health_after} |")
    exit_code = "n/a" if bench.server_exit_code is None else str(bench.server_exit_code)
    out.append(f"| server exit code after SIGTERM | {exit_code} |")
    out.append("")
    for note in bench.notes:
        out.append(f"- {note}")
    if bench.fuzz_log_sample:
        out.append(
            "- The server's first log lines during the fuzzed requests: "
            + "; ".join(f"`{line.replace('`', chr(39))}`" for line in bench.fuzz_log_sample)
        )
    if bench.notes or bench.fuzz_log_sample:
        out.append("")
    out.append("| RPC | requests | status codes |")
    out.append("|---|---:|---|")
    for rpc, codes in bench.by_rpc.items():
        out.append(f"| {rpc} | {sum(codes.values()):,} | {_codes(codes)} |")
    out.append("")
    if bench.forbidden:
        out.append(f"First INTERNAL / UNKNOWN answers (of {bench.forbidden_count}):")
        out.append("")
        for item in bench.forbidden:
            request = item.request.replace("`", "'")
            out.append(f"- `{item.rpc}` → {item.code} ({item.details}); request: `{request}`")
        out.append("")
    return out
