"""`python -m bench.run [--quick] [--only SECTIONS]`: measure DESIGN.md §8 targets and the
issue's fitting targets, and write bench/RESULTS.md.

1. in-process: closed form, compiled-once GP, cvxpy built per request, accuracy, profiles;
2. a real `planner-server` on a loopback port: round trips, derived server-side time, the
   handler timed in-process, the first request after start;
3. sustained load with grpc.aio (64 callers; closed-form mix, GP-only mix);
4. the planning queries in-process, compiled-once GPs against problems built per request;
5. accuracy on published ladders (bench/accuracy.py: Chinchilla, Muennighoff C4, OLMo ladder;
   every fit method, held-out relative errors);
6. fitting at scale (bench/scale.py: peak RSS of 50,000-run fits, bootstrap on 2 workers);
fuzz: 10,000 hypothesis requests over every RPC, and random bytes, through a dedicated server
   (bench/fuzz.py: status codes, no INTERNAL or UNKNOWN, RSS, health after);
batch: plans/s of one PlanComputeOptimalBatch call of 100,000 budgets against single calls, and
   PredictBatch points/s (bench/batch.py: handler in-process and round trips);
serving: capped plans beside two bootstrap fits, deadline or cancel to idle fit workers, SIGTERM
   with an operation running, clients that never read (bench/serving.py);
replicas: a mix of reads, plans and writes from 64 callers on 1 and 2 server processes
   (PLANNER_WORKERS), on SQLite and PostgreSQL (bench/replicas.py);
curves: the Multi-Power Law fit, a 100,000-step prediction (compressed against exact) and the
   schedule searches at 24,000 steps (bench/curves.py).

Progress goes to stderr. --quick is a smoke test and writes bench/out/ instead.
`--only accuracy` (or `scale`, `fuzz`, or `accuracy,scale`) runs just those sections and writes
bench/out/RESULTS.accuracy.md (RESULTS.scale.md, ...) instead of RESULTS.md:
`.venv/bin/python -m bench.run --only accuracy` (add --quick for a smoke test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import (
    accuracy,
    curves,
    domain,
    fitting,
    fuzz,
    load,
    machine,
    queries,
    replicas,
    report,
    scale,
    service,
    serving,
)
from bench import batch as batch_queries
from bench.domain import log
from bench.targets import verdict
from tests.service.server_process import ServerProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
QUICK_RESULTS = HERE / "out" / "RESULTS.quick.md"
# Sections that `--only` can run on their own.
SECTIONS = ("accuracy", "scale", "fuzz", "batch", "serving", "replicas", "curves")


@dataclass(frozen=True)
class RoundTripCounts:
    plans: int
    client_library: int
    handler: int
    max_seconds: float
    first_deadline: float

    @staticmethod
    def for_mode(quick: bool) -> RoundTripCounts:
        if quick:
            return RoundTripCounts(150, 50, 150, 0.5, 5.0)
        return RoundTripCounts(3_000, 500, 2_000, 6.0, 5.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke test")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write the report (default {RESULTS.relative_to(REPO)}, or "
        f"{QUICK_RESULTS.relative_to(REPO)} with --quick)",
    )
    parser.add_argument(
        "--only",
        type=_sections,
        default=None,
        metavar="SECTIONS",
        help=f"run only these sections, comma-separated, of {', '.join(SECTIONS)}; writes "
        "bench/out/RESULTS.<sections>.md",
    )
    return parser.parse_args(argv)


def _sections(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SECTIONS)}; got {value!r}")
    return tuple(n for n in SECTIONS if n in names)


def _plain(value: object) -> object:
    """JSON fallback: dataclasses as dicts, anything else as its string."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def run_sections(names: tuple[str, ...], quick: bool, output: Path | None) -> int:
    """Only the named sections (§5 accuracy, §6 scale), reported on their own."""
    began = time.monotonic()
    host = machine.describe(REPO)
    log(f"{host.cpu_model}, {host.usable_cpus} cores, Python {host.python}, {host.utc_time}")
    accuracy_results = accuracy.run(quick) if "accuracy" in names else None
    scale_results = scale.run(quick) if "scale" in names else None
    fuzz_results = fuzz.run(quick) if "fuzz" in names else None
    batch_results = batch_queries.run(quick) if "batch" in names else None
    serving_results = serving.run(quick) if "serving" in names else None
    replicas_results = replicas.run(quick) if "replicas" in names else None
    curves_results = curves.run(quick) if "curves" in names else None
    stem = "RESULTS." + ".".join(names) + (".quick" if quick else "")
    output = output or HERE / "out" / f"{stem}.md"
    command = "python -m bench.run --only " + ",".join(names)
    text = report.render_sections(
        quick,
        host,
        time.monotonic() - began,
        os.getloadavg(),
        command,
        accuracy_results,
        scale_results,
        fuzz_results,
        batch_results,
        serving_results,
        replicas_results,
        curves_results,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    raw = HERE / "out" / f"{stem.replace('RESULTS', 'results')}.json"
    raw.write_text(
        json.dumps(
            {
                "accuracy": accuracy_results,
                "scale": scale_results,
                "fuzz": fuzz_results,
                "batch": batch_results,
                "serving": serving_results,
                "replicas": replicas_results,
                "curves": curves_results,
            },
            indent=1,
            default=_plain,
        )
        + "\n"
    )
    log(f"wrote {output} and {raw} in {time.monotonic() - began:.0f} s")
    fuzz_rows = report.fuzz_targets(fuzz_results) if fuzz_results else []
    fuzz_rows += report.batch_target_rows(batch_results) if batch_results else []
    fuzz_rows += report.serving_target_rows(serving_results) if serving_results else []
    fuzz_rows += report.curves_target_rows(curves_results) if curves_results else []
    for row in report.issue_targets(accuracy_results, scale_results) + fuzz_rows:
        log(f"  {verdict(row.met).strip('*'):>12}  {row.what}: {row.measured}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    if args.only:
        return run_sections(args.only, quick, args.output)
    output: Path = args.output or (QUICK_RESULTS if quick else RESULTS)
    began = time.monotonic()
    host = machine.describe(REPO)
    log(f"{host.cpu_model}, {host.usable_cpus} cores, Python {host.python}, {host.utc_time}")

    counts = RoundTripCounts.for_mode(quick)
    load_settings = load.LoadSettings.for_mode(quick)

    with tempfile.TemporaryDirectory(prefix="planner-bench-") as scratch:
        workdir = Path(scratch)
        server = ServerProcess(workdir / "bench.db", solver_processes=None)
        if quick:
            # Boot the server while the in-process parts run; a full run keeps them apart.
            log("launching planner-server early (quick mode)")
            server.launch()
        try:
            domain_results = domain.run(domain.DomainCounts.for_mode(quick))
            log("handler timing on an in-process server (store + warm solver pool)")
            handler = service.handler_times(workdir, counts.handler, counts.max_seconds)
        except BaseException:
            server.stop()
            raise

        seconds_to_serving: float | None = None
        first: service.FirstRequest | None = None
        closed_trips: service.RoundTrips | None = None
        capped_trips: service.RoundTrips | None = None
        client_library = None
        loads: list[load.LoadResult] = []
        note = ""
        try:
            with server:
                log(f"planner-server on {server.target}: waiting for health SERVING")
                seconds_to_serving = server.wait_serving()
                first = service.first_request(
                    server.target, seconds_to_serving, counts.first_deadline
                )
                log(f"SERVING after {seconds_to_serving:.1f} s; first GP plan {first.status}")
                log(f"(i) closed-form round trips: up to {counts.plans}")
                closed_trips = service.round_trips(
                    server.target,
                    "closed form",
                    service.closed_form_request,
                    service.expects_closed_form,
                    counts.plans,
                    counts.max_seconds,
                )
                log(f"(ii) constrained round trips: up to {counts.plans // 2}")
                capped_trips = service.round_trips(
                    server.target,
                    "constrained",
                    service.capped_request,
                    service.expects_gp,
                    counts.plans // 2,
                    counts.max_seconds,
                )
                log(f"closed form through clients.client: up to {counts.client_library}")
                client_library = service.client_library_round_trips(
                    server.target, counts.client_library, counts.max_seconds
                )
                for name, make, check in (
                    ("closed-form mix", service.closed_form_mix, service.expects_closed_form),
                    ("GP-only mix", service.gp_mix, service.expects_gp),
                ):
                    log(
                        f"load, {name}: {load_settings.concurrency} callers, at most "
                        f"{load_settings.max_requests} requests / {load_settings.max_seconds:g} s"
                    )
                    result = load.sustained_load(
                        server.target, name, make, check, load_settings, server.pid
                    )
                    log(
                        f"  {result.qps:,.0f} queries/s, p99 "
                        f"{report.duration(result.latency.p99)}, {result.error_count} errors"
                    )
                    loads.append(result)
        except RuntimeError as error:
            note = f"The gRPC part stopped early: {error}"
            log(note)

    fit_results = fitting.run(quick)
    query_results = queries.run(quick)
    accuracy_results = accuracy.run(quick)
    scale_results = scale.run(quick)
    try:
        fuzz_results: fuzz.FuzzBench | None = fuzz.run(quick)
    except RuntimeError as error:  # the fuzz server did not start
        log(f"fuzz: not run: {error}")
        fuzz_results = None
    batch_results = batch_queries.run(quick)
    serving_results = serving.run(quick)
    replicas_results = replicas.run(quick)
    curves_results = curves.run(quick)
    results = report.BenchResults(
        quick=quick,
        machine=host,
        wall_seconds=time.monotonic() - began,
        domain=domain_results,
        handler=handler,
        seconds_to_serving=seconds_to_serving,
        first=first,
        closed_trips=closed_trips,
        capped_trips=capped_trips,
        client_library=client_library,
        loads=loads,
        server_exit_code=server.exit_code,
        server_note=note,
        load_average_at_end=os.getloadavg(),
        fitting=fit_results,
        queries=query_results,
        accuracy=accuracy_results,
        scale=scale_results,
        fuzz=fuzz_results,
        batch=batch_results,
        serving=serving_results,
        replicas=replicas_results,
        curves=curves_results,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.render(results) + "\n")
    raw = HERE / "out" / ("results.quick.json" if quick else "results.json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(dataclasses.asdict(results), indent=1, default=str) + "\n")
    log(f"wrote {output} and {raw} in {results.wall_seconds:.0f} s")
    fuzz_rows = report.fuzz_targets(fuzz_results) if fuzz_results else []
    issue_rows = report.issue_targets(accuracy_results, scale_results) + fuzz_rows
    issue_rows += report.batch_target_rows(batch_results)
    issue_rows += report.serving_target_rows(serving_results)
    issue_rows += report.curves_target_rows(curves_results)
    for row in report.targets(results) + issue_rows:
        log(f"  {verdict(row.met).strip('*'):>12}  {row.what}: {row.measured}")
    return 0 if not note else 1


if __name__ == "__main__":
    sys.exit(main())
