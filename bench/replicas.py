"""Replicas under load (issue 11's benchmark): one `planner-server` of 1 and then of 2 server
processes (PLANNER_WORKERS, one port shared through SO_REUSEPORT), on SQLite and on PostgreSQL,
each under the same mix of reads, plans and a few writes from 64 grpc.aio callers.

The probe is bench/load.py's (warm-up, then a recorded phase bounded by count and seconds, CPU
from /proc); the callers spread over 16 channels, each its own connection, since the kernel
balances a shared port per connection. Both configurations get the same number of solver and fit
processes: 1 process with 2 of each, or 2 processes with 1 of each. Which process answered each
call comes from the servers' access lines.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from bench import load
from bench.domain import log
from bench.service import FAMILY, expects_closed_form, expects_gp, gp_mix
from bench.service import closed_form_mix as closed_form_plan
from bench.stats import jitter
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from tests.postgres_cluster import PostgresCluster, find_binaries
from tests.service.server_process import ServerProcess
from tests.service.slow_fits import create_family, noisy_runs

ENGINES = ("SQLite", "PostgreSQL")
PROCESSES = (1, 2)
# Solver and fit processes per server process: the same totals (2 and 2) either way.
POOLS = {1: 2, 2: 1}
RUNS_FAMILY = "replicas-runs"
RUNS = 2_000
PAGE_SIZE = 100
WRITE_FAMILIES = 8
# The mix, in percent of requests; "plan" is closed form (no caps), "capped plan" a GP solve.
MIX = {
    "GetFamily": 38,
    "ListRuns": 20,
    "Predict": 20,
    "plan": 15,
    "capped plan": 5,
    "AddRuns": 2,
}
# Request n is of kind SLOTS[n % 100]: exact shares, spread through the sequence.
SLOTS = [kind for kind, share in MIX.items() for _ in range(share)]
random.Random(11).shuffle(SLOTS)
NO_POSTGRES = "not run (no PostgreSQL server binaries)"
# Other processes using this many cores during a row make its numbers suspect.
CONTENDED_CORES = 0.25


@dataclass(frozen=True)
class ReplicaRow:
    engine: str
    processes: int
    pool_processes: int  # solver processes, and as many fit processes, per server process
    load: load.LoadResult | None
    seconds_to_serving: float | None
    # Share of the calls (warm-up included) each server process answered, largest first.
    shares: list[float]
    # Median time in the server per RPC (ms, warm-up included), from the access lines.
    server_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class ReplicasBench:
    quick: bool
    settings: load.LoadSettings
    usable_cpus: int
    rows: list[ReplicaRow]
    notes: list[str] = field(default_factory=list)

    def row(self, engine: str, processes: int) -> ReplicaRow | None:
        return next((r for r in self.rows if r.engine == engine and r.processes == processes), None)

    def ratio(self, engine: str) -> float | None:
        """queries/s of 2 processes over 1 process."""
        one, two = self.row(engine, 1), self.row(engine, 2)
        if one is None or two is None or one.load is None or two.load is None:
            return None
        return two.load.qps / one.load.qps if one.load.qps > 0 else None


def settings_for(quick: bool) -> load.LoadSettings:
    # 16 connections: a 12/4 split or worse between two processes is 8% likely (8: 29%).
    if quick:
        return load.LoadSettings(64, 16, 5_000, 0.5, 0.2, 10.0)
    return load.LoadSettings(64, 16, 200_000, 10.0, 1.0, 10.0)


# -- the mix -----------------------------------------------------------------------------------


class Mix:
    """Request n of the mix, each distinct where a cache could answer it."""

    def __init__(self, families: list[str], page_tokens: list[str], tag: str) -> None:
        self.families = families
        self.page_tokens = page_tokens
        self.tag = tag  # keeps run ids new across probes on one database

    def prepare(self, serial: int) -> load.Send:
        kind = SLOTS[serial % len(SLOTS)]
        if kind == "GetFamily":
            name = self.families[serial % len(self.families)]
            family_request = pb.GetFamilyRequest(name=name)

            async def get_family(stub: rpc.PlannerServiceStub, deadline: float) -> bool:
                reply = await stub.GetFamily(family_request, timeout=deadline)
                return bool(reply.family.name == name)

            return get_family
        if kind == "ListRuns":
            token = self.page_tokens[serial % len(self.page_tokens)]
            page = pb.ListRunsRequest(family=RUNS_FAMILY, page_size=PAGE_SIZE, page_token=token)

            async def list_runs(stub: rpc.PlannerServiceStub, deadline: float) -> bool:
                reply = await stub.ListRuns(page, timeout=deadline)
                return len(reply.runs) == PAGE_SIZE

            return list_runs
        if kind == "Predict":
            predict = pb.PredictRequest(
                law=pb.LawSelector(family=FAMILY),
                params=7e10 * jitter(serial, 0.5),
                tokens=1.4e12 * jitter(3 * serial + 1, 0.5),
            )

            async def predict_loss(stub: rpc.PlannerServiceStub, deadline: float) -> bool:
                reply = await stub.Predict(predict, timeout=deadline)
                return math.isfinite(reply.loss) and reply.loss > 0

            return predict_loss
        if kind in ("plan", "capped plan"):
            plan = closed_form_plan(serial) if kind == "plan" else gp_mix(serial)
            check = expects_closed_form if kind == "plan" else expects_gp

            async def plan_compute(stub: rpc.PlannerServiceStub, deadline: float) -> bool:
                return check(await stub.PlanComputeOptimal(plan, timeout=deadline))

            return plan_compute
        params = 1e8 * jitter(serial, 0.5)
        write = pb.AddRunsRequest(
            family=f"replicas-writes-{serial % WRITE_FAMILIES}",
            runs=[
                pb.Run(
                    run_id=f"{self.tag}-{serial}",
                    params=params,
                    tokens=20 * params,
                    loss=3.0 * jitter(serial + 5, 0.1),
                )
            ],
        )

        async def add_runs(stub: rpc.PlannerServiceStub, deadline: float) -> bool:
            reply = await stub.AddRuns(write, timeout=deadline)
            return bool(reply.added == 1)

        return add_runs


def seed(target: str) -> tuple[list[str], list[str]]:
    """The runs family and the write families, once per database; (families to read, ListRuns
    page tokens)."""
    with grpc.insecure_channel(target) as channel:
        stub = rpc.PlannerServiceStub(channel)
        names = {f.name for f in stub.ListFamilies(pb.ListFamiliesRequest(), timeout=30).families}
        if RUNS_FAMILY not in names:
            create_family(stub, RUNS_FAMILY, noisy_runs(RUNS))
        for index in range(WRITE_FAMILIES):
            if f"replicas-writes-{index}" not in names:
                family = pb.Family(name=f"replicas-writes-{index}")
                stub.CreateFamily(pb.CreateFamilyRequest(family=family), timeout=30)
        families = [
            f.name for f in stub.ListFamilies(pb.ListFamiliesRequest(), timeout=30).families
        ]
        tokens = [""]
        while True:
            request = pb.ListRunsRequest(
                family=RUNS_FAMILY, page_size=PAGE_SIZE, page_token=tokens[-1]
            )
            reply = stub.ListRuns(request, timeout=30)
            if not reply.next_page_token:
                break
            tokens.append(reply.next_page_token)
    # Only full pages: the last one is dropped if the runs do not divide evenly.
    return families, tokens[: RUNS // PAGE_SIZE]


# -- servers -----------------------------------------------------------------------------------


def access_lines(server: ServerProcess, offset: int) -> tuple[list[float], dict[str, float]]:
    """From the access lines logged after `offset`: each process's share of the calls, largest
    first, and the median duration in the server of each RPC (ms)."""
    time.sleep(0.3)  # access lines are written in batches
    lines = [r for r in server.log_records(offset) if r.get("name") == "planner.access"]
    counts = Counter(r["process"] for r in lines)
    total = sum(counts.values())
    durations: dict[str, list[float]] = {}
    for r in lines:
        value = r.get("duration_ms")
        if isinstance(value, int | float):
            durations.setdefault(str(r.get("rpc")), []).append(float(value))
    medians = {name: float(np.median(values)) for name, values in sorted(durations.items())}
    return (sorted((n / total for n in counts.values()), reverse=True) if total else []), medians


def postmaster_pid(cluster: PostgresCluster) -> int | None:
    try:
        return int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure(
    workdir: Path,
    engine: str,
    processes: int,
    url: str | None,
    database_pid: int | None,
    settings: load.LoadSettings,
) -> ReplicaRow:
    pools = POOLS[processes]
    env = {"PLANNER_WORKERS": str(processes), "PLANNER_FIT_PROCESSES": str(pools)}
    database = workdir / f"{engine.lower()}-{processes}.db"
    if url is None:
        database = workdir / "sqlite.db"  # both rows on one database, as PostgreSQL's are
    server = ServerProcess(database, env, solver_processes=pools, database_url=url)
    label = f"{engine}, {processes} process{'es' if processes > 1 else ''}"
    log(f"replicas: {label} ({pools} solver and {pools} fit processes each): starting")
    with server:
        seconds = server.wait_serving()
        # Health answers as soon as one process serves; connections made before the other
        # listens would all go to the first.
        server.wait_processes_serving(processes)
        families, tokens = seed(server.target)
        mix = Mix(families, tokens, f"p{processes}")
        log(
            f"replicas: {label}: {settings.concurrency} callers, at most "
            f"{settings.max_requests:,} requests / {settings.max_seconds:g} s"
        )
        offset = server.log.stat().st_size
        result = load.sustained_calls(
            server.target, label, mix.prepare, settings, server.pid, database_pid
        )
        split, server_ms = access_lines(server, offset)
    log(
        f"replicas: {label}: {result.qps:,.0f} queries/s, p99 {result.latency.p99 * 1e3:.1f} ms, "
        f"{result.error_count} errors, {result.wrong_path} wrong; calls per process "
        + "/".join(f"{s:.0%}" for s in split)
    )
    return ReplicaRow(engine, processes, pools, result, seconds, split, server_ms)


ERRORS = (RuntimeError, grpc.RpcError, OSError, TimeoutError)


def _engine_rows(
    workdir: Path, engine: str, url: str | None, database_pid: int | None, quick: bool
) -> list[ReplicaRow]:
    rows = []
    for processes in PROCESSES:
        try:
            rows.append(measure(workdir, engine, processes, url, database_pid, settings_for(quick)))
        except ERRORS as error:
            note = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
            log(f"replicas: {engine}, {processes} processes: {note}")
            rows.append(ReplicaRow(engine, processes, POOLS[processes], None, None, [], note=note))
    return rows


def run(quick: bool) -> ReplicasBench:
    rows: list[ReplicaRow] = []
    with tempfile.TemporaryDirectory(prefix="planner-replicas-") as scratch:
        workdir = Path(scratch)
        rows += _engine_rows(workdir, "SQLite", None, None, quick)
        binaries = find_binaries()
        if binaries is None:
            rows += [
                ReplicaRow("PostgreSQL", n, POOLS[n], None, None, [], note=NO_POSTGRES)
                for n in PROCESSES
            ]
            log(f"replicas: PostgreSQL {NO_POSTGRES}")
        else:
            cluster: PostgresCluster | None = None
            try:
                log(f"replicas: a PostgreSQL cluster from {binaries}")
                cluster = PostgresCluster(binaries)  # KeyError: no postgres user to run it as
                cluster.start()
                url = cluster.new_database()
                rows += _engine_rows(workdir, "PostgreSQL", url, postmaster_pid(cluster), quick)
            except (*ERRORS, KeyError) as error:
                note = f"not run: the cluster did not start: {str(error).splitlines()[0]}"
                log(f"replicas: PostgreSQL {note}")
                rows += [
                    ReplicaRow("PostgreSQL", n, POOLS[n], None, None, [], note=note)
                    for n in PROCESSES
                ]
            finally:
                if cluster is not None:
                    # Stopping a cluster that never started fails too; its files go anyway.
                    with contextlib.suppress(RuntimeError, OSError):
                        cluster.stop()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return ReplicasBench(quick, settings_for(quick), usable, rows)


# -- the report --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:.1f} ms"


def _cores(seconds: float | None, elapsed: float) -> str:
    """CPU-seconds and CPU-seconds per second."""
    if seconds is None or elapsed <= 0 or seconds < 0:
        return "n/a"
    return f"{seconds:.1f} s ({seconds / elapsed:.2f})"


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in codes.items())


def section(bench: ReplicasBench) -> list[str]:
    s = bench.settings
    out = ["## Replicas: 1 and 2 server processes under load", ""]
    out.append(
        "`bench/replicas.py`: one `planner-server` with `PLANNER_WORKERS` 1 and then 2 (two "
        "whole server processes under a supervisor, one port shared through SO_REUSEPORT), on "
        "a SQLite file and on a PostgreSQL database (a private cluster on loopback, fsync "
        "off); both rows of an engine use one database. For fairness both configurations get "
        "the same pools in total: 1 process with 2 solver and 2 fit processes, or 2 processes "
        "with 1 of each (the fit processes sit idle here). Other settings are the defaults "
        "(access log on, law cache 2 s). The load: "
        f"{s.concurrency} grpc.aio callers in one client process over {s.channels} channels, "
        "each its own connection (a local subchannel pool; the kernel balances a shared port "
        f"per connection), deadline {s.deadline:g} s; {s.warmup_seconds:g} s unrecorded "
        f"warm-up, then {s.max_seconds:g} s (or {s.max_requests:,} requests) recorded. The "
        "mix, by request number: "
        + ", ".join(f"{share}% {kind}" for kind, share in MIX.items())
        + f". GetFamily cycles through every family; ListRuns reads a page of {PAGE_SIZE} of a "
        f"family of {RUNS:,} runs (each of its {RUNS // PAGE_SIZE} pages in turn); Predict and "
        f"plans use `{FAMILY}` with different numbers each time (plans: budgets over "
        "1e21..1e25 FLOPs without caps, answered by the closed form, or a max_params or "
        "max_tokens cap at 30-70% of the optimum, a GP solve); AddRuns adds one new run to "
        f"one of {WRITE_FAMILIES} families. An answer counts as wrong when it is empty, names "
        "another family, lacks a full page, or came from an unexpected solver path."
    )
    out.append("")
    out.append(
        "CPU columns: CPU-seconds during the recorded phase and, in brackets, per wall-second "
        "(1.0 = one core busy): the server's process tree (supervisor, server processes, "
        "solver and fit processes), the PostgreSQL cluster's, the client process, and "
        "everything else (from /proc/stat). *Calls per process*: each server process's share "
        "of the calls, warm-up included, from its access lines."
    )
    out.append("")
    notes = list(bench.notes)
    others = [cores for row in bench.rows if (cores := _other_cores(row)) is not None]
    busiest = max(others, default=0.0)
    if busiest >= CONTENDED_CORES:
        notes.append(
            f"Other processes used up to {busiest:.2f} cores during these rows (the machine is "
            "shared): the rows competed with them for the cores, so read the ratios as rough."
        )
    for note in notes:
        out.append(f"- {note}")
    if notes:
        out.append("")
    out.append(
        "| engine | server processes | queries/s | p50 | p99 | errors | wrong answers | "
        "calls per process | server CPU | database CPU | client CPU | other CPU |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in bench.rows:
        result = row.load
        if result is None:
            out.append(f"| {row.engine} | {row.processes} | {row.note} | | | | | | | | | |")
            continue
        errors = f"{result.error_count:,}" + (
            f" ({_codes(result.errors)})" if result.errors else ""
        )
        database = "—" if row.engine == "SQLite" else _cores(result.database_cpu, result.elapsed)
        out.append(
            f"| {row.engine} | {row.processes} | {result.qps:,.0f} | "
            f"{_ms(result.latency.median)} | {_ms(result.latency.p99)} | {errors} | "
            f"{result.wrong_path:,} | {' / '.join(f'{x:.0%}' for x in row.shares) or 'n/a'} | "
            f"{_cores(result.server_cpu, result.elapsed)} | {database} | "
            f"{_cores(result.client_cpu, result.elapsed)} | "
            f"{_cores(result.other_cpu, result.elapsed)} |"
        )
    out.append("")
    out += _server_times(bench)
    for engine in ENGINES:
        ratio = bench.ratio(engine)
        out.append(
            f"- {engine}: queries/s of 2 processes / 1 process **"
            + ("n/a" if ratio is None else f"{ratio:.2f}x")
            + "**"
            + _limit(bench, engine)
        )
    out.append("")
    return out


def _other_cores(row: ReplicaRow) -> float | None:
    """Cores other processes used during the row's recorded phase."""
    result = row.load
    if result is None or result.other_cpu is None or result.elapsed <= 0:
        return None
    return result.other_cpu / result.elapsed


def _server_times(bench: ReplicasBench) -> list[str]:
    """Median time in the server per RPC, one column per row that ran."""
    ran = [row for row in bench.rows if row.server_ms]
    if not ran:
        return []
    methods = sorted({method for row in ran for method in row.server_ms})
    out = [
        "Median time in the server per RPC (the access lines' duration, warm-up included; "
        "time waiting inside the server counts, queueing in the kernel does not). The store's "
        "calls (GetFamily, ListRuns, AddRuns) run on each server process's default thread "
        "pool (`asyncio.to_thread`) and wait there for a thread and for the interpreter lock; "
        "Predict and plans take their law from the law cache and stay on the event loop (GP "
        "solves go to a solver process):",
        "",
        "| RPC | " + " | ".join(f"{row.engine}, {row.processes}" for row in ran) + " |",
        "|---|" + "---:|" * len(ran),
    ]
    for method in methods:
        cells = [
            f"{row.server_ms[method]:.1f} ms" if method in row.server_ms else "—" for row in ran
        ]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _per_second(seconds: float | None, result: load.LoadResult) -> float | None:
    if seconds is None or result.elapsed <= 0:
        return None
    return seconds / result.elapsed


def _limit(bench: ReplicasBench, engine: str) -> str:
    """What the CPU readings say about the ratio: cores used by the servers and by the whole
    machine (client, database and other users of the shared cores included)."""
    one, two = bench.row(engine, 1), bench.row(engine, 2)
    if one is None or two is None or one.load is None or two.load is None:
        return "."
    cores = bench.usable_cpus
    s1, s2 = _per_second(one.load.server_cpu, one.load), _per_second(two.load.server_cpu, two.load)
    m1, m2 = (
        _per_second(one.load.machine_cpu, one.load),
        _per_second(two.load.machine_cpu, two.load),
    )
    if s1 is None or s2 is None or m1 is None or m2 is None:
        return "."
    o1, o2 = _per_second(one.load.other_cpu, one.load), _per_second(two.load.other_cpu, two.load)
    client = two.load.client_cpu / two.load.elapsed
    text = (
        f": the server used {s1:.2f} cores with 1 process and {s2:.2f} with 2; the whole "
        f"machine {m1:.2f} and {m2:.2f} of its {cores} usable cores"
        + ("" if o1 is None or o2 is None else f" (other processes {o1:.2f} and {o2:.2f})")
    )
    parts = []
    if s1 < 1.3:
        parts.append(
            "one process stays near one core: its event loop and the threads running its store "
            "calls share one interpreter lock, and the solver processes only take GP solves"
            + (", while CPU was left idle for a second process" if m1 < 0.9 * cores else "")
        )
    if m2 >= 0.9 * cores:
        parts.append(
            "with 2 the cores were full (client, database and other processes included), so "
            "the gain is capped by this machine's cores, not by the server"
        )
    elif client >= 0.9:
        parts.append(f"the one client process, at {client:.2f} cores, bounded the rate")
    else:
        parts.append(
            "the cores were not saturated, so the limit lay elsewhere than CPU: waits (compare "
            "the time in the server of the calls that read or write the store with the plans')"
        )
    if o1 is not None and o2 is not None and abs(o1 - o2) >= CONTENDED_CORES:
        parts.append(
            f"other processes took {o1:.2f} cores beside the 1-process row and {o2:.2f} beside "
            "the 2-process row, which by itself moves this ratio " + ("up" if o1 > o2 else "down")
        )
    joined = "; ".join(parts)
    return f"{text}. {joined[0].upper()}{joined[1:]}."
